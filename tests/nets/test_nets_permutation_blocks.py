"""Block perms (heads, flattened channels) and concatenations of them in a PermutationSpec."""

from __future__ import annotations

import pytest
import torch

from engine.nets import BlockPerm, PermutationSpec, apply_permutation, random_permutation
from engine.probes.connectivity import weight_matching


def test_a_block_perm_moves_whole_blocks():
    w = torch.arange(24.0).reshape(6, 4)  # axis 1: 2 units of 2 columns each
    spec = PermutationSpec.from_axes({"w": ("rows", BlockPerm("heads", block=2))})
    out = apply_permutation(spec, {"heads": torch.tensor([1, 0])}, {"w": w})["w"]
    expected = w.reshape(6, 2, 2)[:, [1, 0]].reshape(6, 4)  # the reference: reshape the axis to (units, block)
    assert torch.equal(out, expected)
    assert spec.perm_to_axes == {"rows": (("w", 0),), "heads": (("w", 1),)}
    assert spec.perm_sizes({"w": w}) == {"rows": 6, "heads": 2}


def test_a_plain_name_is_a_block_of_one():
    w = torch.randn(5, 3)
    perm = {"p": torch.tensor([2, 0, 4, 1, 3])}
    plain = apply_permutation(PermutationSpec.from_axes({"w": ("p", None)}), perm, {"w": w})["w"]
    block = apply_permutation(PermutationSpec.from_axes({"w": (BlockPerm("p"), None)}), perm, {"w": w})["w"]
    assert torch.equal(plain, block) and torch.equal(plain, w[perm["p"]])


def test_a_concatenation_permutes_each_part_and_leaves_the_rest():
    x = torch.arange(10.0)
    entry = (BlockPerm("a", 1, 0, 3), BlockPerm("b", 2, 4, 2))  # [a a a | fixed | b b b b | fixed fixed]
    spec = PermutationSpec.from_axes({"x": (entry,)})
    out = apply_permutation(spec, {"a": torch.tensor([2, 1, 0]), "b": torch.tensor([1, 0])}, {"x": x})["x"]
    assert out.tolist() == [2, 1, 0, 3, 6, 7, 4, 5, 8, 9]
    assert spec.perm_sizes({"x": x}) == {"a": 3, "b": 2}


def test_inverse_block_permutation_restores_the_state():
    state = {"w1": torch.randn(12, 5), "w2": torch.randn(3, 12)}
    spec = PermutationSpec.from_axes({"w1": (BlockPerm("h", 3), None), "w2": (None, BlockPerm("h", 3))})
    perms = random_permutation(spec, state, seed=0)
    assert perms["h"].shape == (4,)
    inverse = {k: torch.argsort(p) for k, p in perms.items()}
    restored = apply_permutation(spec, inverse, apply_permutation(spec, perms, state))
    assert all(torch.equal(restored[k], state[k]) for k in state)


def test_a_block_that_does_not_tile_the_axis_is_refused():
    spec = PermutationSpec.from_axes({"w": (BlockPerm("h", 3),)})
    with pytest.raises(ValueError, match=r"BlockPerm\(perm='h', block=3, offset=0, units=None\) does not fit an axis "
                                         r"of length 8"):
        spec.perm_sizes({"w": torch.zeros(8)})
    with pytest.raises(ValueError, match=r"a BlockPerm needs block >= 1"):
        BlockPerm("h", block=0)


def test_weight_matching_recovers_a_planted_block_permutation():
    torch.manual_seed(0)
    state = {"fc1.weight": torch.randn(12, 5), "fc1.bias": torch.randn(12), "fc2.weight": torch.randn(3, 12)}
    spec = PermutationSpec.from_axes({"fc1.weight": (BlockPerm("heads", 3), None), "fc1.bias": (BlockPerm("heads", 3),),
                                      "fc2.weight": (None, BlockPerm("heads", 3))})
    perms = {"heads": torch.tensor([2, 3, 1, 0])}
    planted = apply_permutation(spec, perms, state)
    alignment = weight_matching(state, planted, spec)
    assert alignment.perms["heads"].tolist() == torch.argsort(perms["heads"]).tolist()
    recovered = alignment.apply(spec, planted)
    assert all(torch.equal(recovered[k], state[k]) for k in state)
