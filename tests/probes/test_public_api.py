"""The public names of engine.probes: every domain's ``__all__``, the notebook re-exports, and
every ``engine.probes.…`` path the README, the docs and the docstrings show."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import engine.probes as probes

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("core", "landscape", "connectivity", "representations", "rashomon", "phases", "zoo")
# evaluation plumbing: public inside engine.probes.core, not re-exported for notebooks
PLUMBING = {"Evaluator", "FirstLayer", "find_first_layer", "evaluate_plane_with_strategy", "check_bn", "split_name",
            "reset_inputs", "path_states", "path_buffers", "evaluate_states", "evaluate_line", "lerp_buffers",
            "lerp_flat", "CHAIN_ACTIVATIONS", "LinearChain", "leaf_calls", "linear_chain", "is_mean_cross_entropy"}
# what a notebook does first, as the README and the design describe it
NOTEBOOK = ("ParamLayout", "evaluate_points", "flatten_params", "resolve_data", "loss_surface_2d", "random_direction",
            "hessian_top_eigs", "hessian_trace", "hessian_spectral_density", "intrinsic_dimension", "interpolate",
            "barrier", "weight_matching", "apply_alignment", "align_models", "merge_models", "capture_activations",
            "linear_cka", "rdm", "similarity_grid", "project", "rashomon_set", "predictive_multiplicity",
            "variable_importance_cloud", "rashomon_trees", "cell_table", "classify_phases")
REF = re.compile(r"\bengine\.probes(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def _shown_paths() -> set[str]:
    """``engine.probes.…`` paths written in the README, docs/*.md and the Python sources' text."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("engine", "pages", "bench", "store"):
        texts += sorted((ROOT / folder).rglob("*.py"))
    found = set()
    for path in texts:
        for ref in REF.findall(path.read_text()):
            found.add(ref.rstrip("."))
    return found


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_domain_lists_its_public_names_explicitly(domain):
    mod = importlib.import_module(f"engine.probes.{domain}")
    names = mod.__all__
    assert len(names) == len(set(names)), f"duplicates in engine.probes.{domain}.__all__"
    assert all(not n.startswith("_") for n in names)
    for name in names:
        assert getattr(mod, name) is not None
    source = Path(mod.__file__).read_text()
    assert "import *" not in source, f"engine/probes/{domain}/__init__.py star-imports"


@pytest.mark.parametrize("domain", DOMAINS)
def test_engine_probes_re_exports_every_domain_name_but_the_plumbing(domain):
    mod = importlib.import_module(f"engine.probes.{domain}")
    for name in set(mod.__all__) - PLUMBING:
        assert name in probes.__all__, f"engine.probes does not re-export {domain}.{name}"
        assert getattr(probes, name) is getattr(mod, name)


def test_top_level_init_is_explicit_and_its_all_resolves():
    tree = ast.parse(Path(probes.__file__).read_text())
    assert not any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in tree.body)
    assert len(probes.__all__) == len(set(probes.__all__))
    for name in probes.__all__:
        assert hasattr(probes, name), name
    assert PLUMBING.isdisjoint(probes.__all__)


@pytest.mark.parametrize("name", NOTEBOOK)
def test_notebook_names_import_from_engine_probes(name):
    namespace = {}
    exec(f"from engine.probes import {name}", namespace)
    assert callable(namespace[name]) or isinstance(namespace[name], type)


def test_every_path_the_readme_docs_and_docstrings_show_resolves():
    shown = _shown_paths()
    assert len(shown) > 30  # the scan found the references (docstrings name modules and functions)
    broken = []
    for dotted in sorted(shown):
        try:
            _resolve(dotted)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{dotted}: {exc}")
    assert not broken, "paths shown in text that do not resolve:\n" + "\n".join(broken)


def test_the_evaluator_is_public_inside_the_engine():
    from engine.probes.core import Evaluator
    from engine.probes.landscape import HessianOperator

    hint = HessianOperator.__init__.__annotations__["ev"]
    assert hint in ("Evaluator", Evaluator)


def test_issue_17_landscape_names_are_callable_from_engine_probes():
    """The names issue 17 fixes for scripts: per-layer curvature and a surface's topology (plus their helpers)."""
    from engine.probes import landscape

    for name in ("per_layer_hessian", "per_layer_hessian_over_training", "surface_persistence", "trajectory_plane"):
        assert callable(getattr(probes, name)) and getattr(probes, name) is getattr(landscape, name)
