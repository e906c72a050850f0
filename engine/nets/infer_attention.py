"""``nn.MultiheadAttention`` as one operation of :func:`engine.nets.infer_perm_spec`.

Traced, its packed in-projection is unflattened to ``(3, embed_dim)`` and read with
``select`` -- which the per-op rules must treat as positional, pinning every head. As
one operation the symmetry is plain: a head perm ``H`` (blocks of ``head_dim`` rows)
acts on each of the q, k and v thirds of ``in_proj_weight``'s rows and on
``out_proj.weight``'s columns; the embedding axis follows the inputs and the output
projection's rows. Modules with separate key/value sizes or ``add_bias_kv`` are left to
the per-op rules (and so kept fixed).
"""

from __future__ import annotations

from torch import nn

from engine.nets.infer_labels import Classes, Seg
from engine.nets.infer_layout import meta_shape

__all__ = ["AttentionRegions"]


class AttentionRegions:
    """The graph nodes of every supported ``nn.MultiheadAttention``, and their output labels."""

    def __init__(self, model: nn.Module, graph, params: dict[str, str]):
        self.params = params  # placeholder name -> parameter name
        self.modules = {name: m for name, m in model.named_modules()
                        if isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim and m.bias_k is None}
        self.regions: dict[str, list] = {}
        self.inner: set = set()
        self.done: set[str] = set()
        self.outputs: dict = {}
        for node in graph.nodes:
            stack = [v[0].replace("L['self'].", "") for v in (node.meta.get("nn_module_stack") or {}).values()]
            path = next((p for p in stack if p in self.modules), None)
            if node.op == "call_function" and path is not None:
                self.regions.setdefault(path, []).append(node)
                self.inner.add(node)

    def output_labels(self, k: Classes, env: dict, labels: dict, node):
        """Labels of one node inside a region: the attention output carries the output
        projection's perm; anything else leaving the module (attention weights) is fixed."""
        path = next(p for p, nodes in self.regions.items() if node in nodes)
        if path not in self.done:
            self.done.add(path)
            self._constrain(k, env, labels, path)
        if node in self.outputs:
            return self.outputs[node]
        shape = meta_shape(node)
        if isinstance(shape, list):
            return [None if sh is None else _fixed(k, sh) for sh in shape]
        return None if shape is None else _fixed(k, shape)

    def _constrain(self, k: Classes, env: dict, labels: dict, path: str) -> None:
        m, nodes = self.modules[path], self.regions[path]
        prefix = f"{path}." if path else ""
        w_in, w_out = labels.get(prefix + "in_proj_weight"), labels.get(prefix + "out_proj.weight")
        if w_in is None or w_out is None:
            return
        heads = k.new(m.embed_dim)
        k.hints[heads] = f"{prefix}heads"
        k.coarsen(heads, m.head_dim, f"heads of {path}")
        reason = f"the heads of nn.MultiheadAttention {path!r}"
        k.unify(w_in[0], (Seg("c", cls=heads),) * 3, reason)
        k.unify(w_out[1], (Seg("c", cls=heads),), reason)
        for key, other in (("in_proj_bias", w_in[0]), ("out_proj.bias", w_out[0])):
            if prefix + key in labels:
                k.unify(labels[prefix + key][0], other, reason)
        inside = set(nodes)
        for node in nodes:  # query, key and value: every activation entering with embed_dim features
            for a in node.all_input_nodes:
                shape, value = meta_shape(a), env.get(a)
                if a not in inside and a.name not in self.params and isinstance(value, tuple) and shape \
                        and shape[-1] == m.embed_dim:
                    k.unify(value[-1], w_in[1], f"the inputs of nn.MultiheadAttention {path!r}")
        projection = next(n for n in nodes if any(self.params.get(a.name) == prefix + "out_proj.weight"
                                                  for a in n.all_input_nodes))
        after = {projection}
        for node in nodes:
            if any(a in after for a in node.all_input_nodes):
                after.add(node)
        for node in after:
            shape = meta_shape(node)
            if isinstance(shape, tuple) and shape and shape[-1] == m.embed_dim:
                self.outputs[node] = _fixed(k, shape[:-1]) + (w_out[0],)


def _fixed(k: Classes, shape) -> tuple:
    return tuple(k.fixed_label(n) for n in shape)
