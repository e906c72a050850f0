"""Rashomon sets of sparse decision trees (TreeFARMS), decoded, predicted and recounted.

``treefarms`` returns the set as a shared DAG of subtree sets. It is decoded here into
padded node tables, one row per tree (preorder; ``true_child``/``false_child`` index
into the row), so that prediction, rules and objectives are computed from the trees
themselves. ``treefarms`` 0.2.4 also reports trees above its own bound at small
regularization, so every tree's objective is recomputed from its rules and only trees
with objective ≤ (1 + multiplier) × optimum are kept; ``n_dropped`` says how many went.

References
----------
.. [1] R. Xin, C. Zhong, Z. Chen, T. Takagi, M. Seltzer, C. Rudin, "Exploring the Whole
   Rashomon Set of Sparse Decision Trees", NeurIPS, 2022 (TreeFARMS).
.. [2] Z. J. Wang, C. Zhong, R. Xin, T. Takagi, Z. Chen, D. H. Chau, C. Rudin,
   M. Seltzer, "TimberTrek: Exploring and Curating Sparse Decision Trees with
   Interactive Visualization", IEEE VIS, 2022.
.. [3] J. Lin, C. Zhong, D. Hu, C. Rudin, M. Seltzer, "Generalized and Scalable Optimal
   Sparse Decision Trees", ICML, 2020 (GOSDT; the objective and ``depth_budget``).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.probes.rashomon._tree_decode import decode_model_set, silenced_stdout

__all__ = ["TreeRashomonSet", "rashomon_trees", "predict_trees", "tree_rules", "tree_to_dict"]

_FIT_LOCK = threading.Lock()  # libgosdt keeps its configuration in process-global state


@dataclass(frozen=True)
class TreeRashomonSet:
    """Sparse decision trees within (1 + multiplier) × optimum, as padded node tables.

    Attributes
    ----------
    feature : np.ndarray
        Split feature of each node, −1 for leaves and padding, shape (T, K), int16.
    true_child, false_child : np.ndarray
        Child node index (into the same row) when the feature is 1 / 0, shape (T, K).
    prediction : np.ndarray
        Class predicted at leaves (−1 elsewhere), shape (T, K), int16.
    n_leaves, depth : np.ndarray
        Leaves and depth (a single leaf has depth 0) per tree, shape (T,).
    features_used : np.ndarray
        Boolean (T, F): which input features each tree splits on.
    objective : np.ndarray
        Recomputed training objective error + regularization × leaves, shape (T,),
        sorted ascending.
    accuracy : np.ndarray
        Recomputed training accuracy, shape (T,).
    reported_objective, reported_accuracy : np.ndarray
        What ``treefarms`` reported for each kept tree, shape (T,).
    optimum, bound : float
        Best objective and the bound (1 + multiplier) × optimum (relative ε).
    n_reported, n_dropped : int
        Trees ``treefarms`` returned, and those dropped for exceeding the bound.
    regularization, rashomon_multiplier : float
    depth_budget : int | None
    feature_names : tuple[str, ...]
    classes : np.ndarray
        Original label values; predictions index into it.
    timed_out : bool
        True when ``time_limit`` stopped the search (the set may be incomplete).
    """

    feature: np.ndarray
    true_child: np.ndarray
    false_child: np.ndarray
    prediction: np.ndarray
    n_leaves: np.ndarray
    depth: np.ndarray
    features_used: np.ndarray
    objective: np.ndarray
    accuracy: np.ndarray
    reported_objective: np.ndarray
    reported_accuracy: np.ndarray
    optimum: float
    bound: float
    n_reported: int
    n_dropped: int
    regularization: float
    rashomon_multiplier: float
    depth_budget: int | None
    feature_names: tuple[str, ...]
    classes: np.ndarray
    timed_out: bool

    @property
    def size(self) -> int:
        """Number of trees in the (recounted) Rashomon set."""
        return int(self.objective.shape[0])

    @property
    def label(self) -> str:
        """The membership condition, stated with its ε convention."""
        return (f"objective ≤ (1 + {self.rashomon_multiplier:g}) × optimum (relative ε); "
                f"objective = error + {self.regularization:g} × leaves")


def _check_inputs(x_bin, y, feature_names):
    x = np.asarray(x_bin.detach().cpu() if hasattr(x_bin, "detach") else x_bin)
    yy = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != yy.shape[0] or x.shape[0] == 0:
        raise ValueError(f"X_bin must have shape (N, F) with N = len(y) = {yy.shape[0]} > 0; "
                         f"got {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("X_bin must contain only 0/1 values (binarize features first, e.g. "
                         "one-hot or threshold columns)")
    names = tuple(feature_names) if feature_names is not None else tuple(
        f"x{j}" for j in range(x.shape[1]))
    if len(names) != x.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names for {x.shape[1]} features")
    classes, codes = np.unique(yy, return_inverse=True)
    return x.astype(np.uint8), codes.astype(np.int64), classes, names


def _fit_treefarms(x: np.ndarray, y: np.ndarray, config: dict) -> tuple[dict, bool]:
    """Run libgosdt on the non-constant columns; returns the raw result and timeout flag."""
    import pandas as pd
    import treefarms.libgosdt as lib

    df = pd.DataFrame(x, columns=[f"f{j}" for j in range(x.shape[1])])
    df["label"] = y
    with _FIT_LOCK, silenced_stdout():
        lib.configure(json.dumps(config))
        raw = lib.fit(df.to_csv(index=False))
        status = lib.status()
    if status not in (0, 2):
        raise RuntimeError(f"treefarms failed with status {status}: {raw[:500]}")
    return json.loads(raw), status == 2


def rashomon_trees(X_bin, y, *, regularization: float, rashomon_multiplier: float,
                   depth_budget: int | None = None, feature_names=None,
                   max_trees: int = 200_000, time_limit: float | None = None,
                   progress: Callable[[float, str], None] | None = None
                   ) -> TreeRashomonSet:
    """Enumerate the Rashomon set of sparse decision trees with ``treefarms``.

    Parameters
    ----------
    X_bin : array-like of shape (N, F)
        Binary (0/1) features.
    y : array-like of shape (N,)
        Class labels.
    regularization : float
        λ in objective = misclassification rate + λ × leaves; in (0, 1).
    rashomon_multiplier : float
        Relative ε: trees with objective ≤ (1 + ε) × optimum are members.
    depth_budget : int, optional
        Maximum depth counting the root as depth 1 (GOSDT's convention: 2 is a stump);
        None for no limit.
    feature_names : sequence of str, optional
    max_trees : int, default 200_000
        Refuse to decode a set larger than this (the count is known before decoding).
    time_limit : float, optional
        Seconds for the search; on timeout a warning is issued and the set may be
        incomplete (``timed_out``).
    progress : callable(fraction, message), optional
        Called at each stage (search, decoding, recounting).

    Returns
    -------
    TreeRashomonSet
        Sorted by recomputed objective.

    Raises
    ------
    ValueError
        For bad parameters, or when the set has more than ``max_trees`` trees.

    References
    ----------
    Xin et al. 2022 (TreeFARMS).
    """
    if not 0 < regularization < 1:
        raise ValueError(f"regularization must be in (0, 1); got {regularization}")
    if not rashomon_multiplier >= 0:
        raise ValueError(f"rashomon_multiplier must be >= 0; got {rashomon_multiplier}")
    if depth_budget is not None and depth_budget < 1:
        raise ValueError(f"depth_budget must be >= 1 (1 is a single leaf) or None; got {depth_budget}")
    report = progress or (lambda fraction, message: None)
    x, codes, classes, names = _check_inputs(X_bin, y, feature_names)
    kept_cols = np.flatnonzero(x.min(axis=0) != x.max(axis=0))  # libgosdt drops constant columns
    config = {"regularization": float(regularization),
              "rashomon_bound_multiplier": float(rashomon_multiplier),
              "depth_budget": int(depth_budget or 0)}
    if time_limit is not None:
        config["time_limit"] = float(time_limit)
    report(0.0, "searching the Rashomon set with treefarms")
    raw, timed_out = _fit_treefarms(x[:, kept_cols], codes, config)
    if timed_out:
        warnings.warn(f"treefarms stopped at time_limit={time_limit} s; the Rashomon set may "
                      "be incomplete", RuntimeWarning, stacklevel=2)
    n_reported = _count(raw)
    if n_reported > max_trees:
        raise ValueError(
            f"treefarms found {n_reported:,} trees, more than max_trees={max_trees:,}; raise "
            f"regularization (now {regularization}), lower rashomon_multiplier (now "
            f"{rashomon_multiplier}), set a depth_budget, or pass a larger max_trees")
    if n_reported == 0:
        raise RuntimeError("treefarms returned no trees; check that y has at least two classes")
    report(0.5, f"decoding {n_reported:,} trees")
    tables = decode_model_set(raw, kept_cols, n_features=x.shape[1], rows=np.unique(x, axis=0))
    report(0.8, "recomputing objectives from the decoded rules")
    return _recount(tables, x, codes, classes, names, regularization, rashomon_multiplier,
                    depth_budget, n_reported, timed_out)


def _count(raw: dict) -> int:
    storage = raw["storage"]
    return int(sum(storage[p]["count"] for p in raw["available_metric_values"]["metric_pointers"]))


def _accuracy(row_pred: np.ndarray, rows_inverse: np.ndarray, codes: np.ndarray, n_classes: int,
              chunk: int = 8192) -> np.ndarray:
    """Accuracy per tree from predictions on distinct rows: Σ_c [pred = c] · count(row, c) / N."""
    counts = np.zeros((row_pred.shape[1], n_classes))
    np.add.at(counts, (rows_inverse, codes), 1.0)
    correct = np.zeros(row_pred.shape[0])
    for s in range(0, row_pred.shape[0], chunk):
        block = row_pred[s:s + chunk]
        correct[s:s + chunk] = sum((block == c).astype(np.float64) @ counts[:, c] for c in range(n_classes))
    return correct / len(codes)


def _recount(tables, x, codes, classes, names, reg, mult, depth_budget, n_reported, timed_out):
    feature, tchild, fchild, pred, leaves, depth, used, rep, row_pred = tables
    n = x.shape[0]
    rows, inverse = np.unique(np.asarray(x, dtype=np.uint8), axis=0, return_inverse=True)
    if row_pred is None:
        row_pred = _route(feature, tchild, fchild, pred, int(depth.max()), rows)  # (T, U)
    acc = _accuracy(row_pred, inverse.reshape(-1), codes, len(classes))
    objective = (1.0 - acc) + reg * leaves
    optimum = float(objective.min())
    bound = (1.0 + mult) * optimum
    keep = np.flatnonzero(objective <= bound * (1 + 1e-9))
    keep = keep[np.argsort(objective[keep], kind="stable")]
    rep_obj = rep[:, 1] / n + reg * rep[:, 2]  # float64 recomputation of reported metrics
    return TreeRashomonSet(
        feature=feature[keep], true_child=tchild[keep], false_child=fchild[keep],
        prediction=pred[keep], n_leaves=leaves[keep], depth=depth[keep],
        features_used=used[keep], objective=objective[keep], accuracy=acc[keep],
        reported_objective=rep_obj[keep], reported_accuracy=1.0 - rep[keep, 1] / n,
        optimum=optimum, bound=bound, n_reported=n_reported,
        n_dropped=int(n_reported - keep.size), regularization=float(reg),
        rashomon_multiplier=float(mult), depth_budget=depth_budget, feature_names=names,
        classes=classes, timed_out=timed_out)


def _predict_tables(feature, tchild, fchild, pred, max_depth, x):
    """Predictions (T, N); binary rows repeat a lot (COMPAS: 6,907 rows, few hundred
    distinct), so each distinct row is routed once."""
    rows, inverse = np.unique(np.asarray(x, dtype=np.uint8), axis=0, return_inverse=True)
    return _route(feature, tchild, fchild, pred, max_depth, rows)[:, inverse.reshape(-1)]


def _route(feature, tchild, fchild, pred, max_depth, x, chunk_elems=1 << 22):
    """Route every row down every tree: max_depth gathers over (trees, rows) -> (T, N)."""
    x = np.asarray(x, dtype=np.uint8)
    t, n = feature.shape[0], x.shape[0]
    out = np.empty((t, n), dtype=np.int16)
    step = max(1, chunk_elems // max(n, 1))
    cols = np.arange(n)[None, :]
    for s in range(0, t, step):
        f, tc, fc, pr = (a[s:s + step].astype(np.int64) for a in (feature, tchild, fchild, pred))
        rows = np.arange(f.shape[0])[:, None]
        node = np.zeros((f.shape[0], n), dtype=np.int64)  # (t_chunk, N)
        for _ in range(max_depth):
            feat = f[rows, node]  # (t_chunk, N)
            go_true = x.T[np.maximum(feat, 0), cols] == 1
            nxt = np.where(go_true, tc[rows, node], fc[rows, node])
            node = np.where(feat >= 0, nxt, node)
        out[s:s + step] = pr[rows, node]
    return out


def predict_trees(trees: TreeRashomonSet, X_bin, *, indices=None) -> np.ndarray:
    """Predictions of every tree (or ``indices``) on binary data, vectorized over trees.

    Parameters
    ----------
    trees : TreeRashomonSet
    X_bin : array-like of shape (N, F), 0/1 features in the training column order.
    indices : array-like of int, optional
        Subset of trees.

    Returns
    -------
    np.ndarray
        Labels (values of ``trees.classes``), shape (T, N).
    """
    x = np.asarray(X_bin.detach().cpu() if hasattr(X_bin, "detach") else X_bin)
    if x.ndim != 2 or x.shape[1] != len(trees.feature_names):
        raise ValueError(f"X_bin must have shape (N, {len(trees.feature_names)}); got {x.shape}")
    sel = slice(None) if indices is None else np.asarray(indices)
    p = _predict_tables(trees.feature[sel], trees.true_child[sel], trees.false_child[sel],
                        trees.prediction[sel], int(trees.depth.max(initial=0)), x)
    return trees.classes[p]


def tree_rules(trees: TreeRashomonSet, index: int) -> list[tuple[tuple[tuple[str, int], ...], object]]:
    """Decode one tree into rules: one (conditions, predicted class) per leaf.

    Conditions are (feature name, required value 0/1) pairs from root to leaf.
    """
    rules = []

    def walk(node: int, path: tuple) -> None:
        f = int(trees.feature[index, node])
        if f < 0:
            rules.append((path, trees.classes[int(trees.prediction[index, node])].item()))
            return
        name = trees.feature_names[f]
        walk(int(trees.true_child[index, node]), path + ((name, 1),))
        walk(int(trees.false_child[index, node]), path + ((name, 0),))

    walk(0, ())
    return rules


def tree_to_dict(trees: TreeRashomonSet, index: int) -> dict:
    """One tree as nested dicts ({"feature", "true", "false"} or {"prediction"})."""

    def build(node: int) -> dict:
        f = int(trees.feature[index, node])
        if f < 0:
            return {"prediction": trees.classes[int(trees.prediction[index, node])].item()}
        return {"feature": trees.feature_names[f], "feature_index": f,
                "true": build(int(trees.true_child[index, node])),
                "false": build(int(trees.false_child[index, node]))}

    return build(0)
