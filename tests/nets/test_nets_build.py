"""build(): determinism, RNG hygiene, output shapes, init scale and error messages."""

from __future__ import annotations

import pytest
import torch

from engine.config import ArchSpec
from engine.nets import available, build


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_every_builtin_is_tested(tested_names):
    assert set(available()) >= {"mlp", "cnn1d", "cnn2d", "resnet", "transformer"}
    assert tested_names >= set(available())


def test_same_seed_same_weights_different_seed_different(case):
    assert _same_state(case.build(seed=3), case.build(seed=3))
    assert not _same_state(case.build(seed=3), case.build(seed=4))


def test_global_rng_untouched(case):
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    case.build(seed=7)
    assert torch.equal(torch.rand(5), expected)


def test_output_shape_train_and_eval(case):
    model = case.build()
    x = case.inputs(batch=4)
    assert model(x).shape == (4, case.n_outputs)
    model.eval()
    assert model(x).shape == (4, case.n_outputs)
    assert model.training is False


def test_init_scale_multiplies_weights_not_norms(case):
    base, scaled = case.build(seed=1), case.build(seed=1, init_scale=2.5)
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm)
    norm_names = {n for n, m in base.named_modules() if isinstance(m, norm_types)}
    for (name, p), q in zip(base.named_parameters(), scaled.parameters()):
        factor = 1.0 if name.rsplit(".", 1)[0] in norm_names else 2.5
        torch.testing.assert_close(q, p * factor)


def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"unknown architecture 'vgg'; available: cnn1d, cnn2d, mlp"):
        build(ArchSpec(name="vgg"), (4,), 2)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("mlp", {"dropout": 0.1},
         r"unknown option\(s\) 'dropout' for architecture 'mlp'; allowed: activation, batchnorm"),
        ("mlp", {"activation": "swish"},
         r"option 'activation' of architecture 'mlp' must be one of relu, tanh, gelu; got 'swish'"),
        ("mlp", {"batchnorm": "yes"}, r"option 'batchnorm' of architecture 'mlp' must be true or false; got 'yes'"),
        ("cnn1d", {"kernel_size": 0}, r"option 'kernel_size' of architecture 'cnn1d' must be >= 1; got 0"),
        ("cnn2d", {"kernel_size": 4},
         r"option 'kernel_size' of architecture 'cnn2d' must be odd \('same' padding\); got 4"),
        ("cnn1d", {"kernel_size": 2.5}, r"option 'kernel_size' of architecture 'cnn1d' must be an integer; got 2.5"),
        ("resnet", {"heads": 2}, r"unknown option\(s\) 'heads' for architecture 'resnet'; allowed: batchnorm$"),
        ("transformer", {"heads": 3}, r"width divisible by heads; got width=8, heads=3"),
    ],
)
def test_bad_options(name, options, message):
    shapes = {"mlp": ((4,), None), "cnn1d": ((1, 8), None), "cnn2d": ((1, 8, 8), None), "resnet": ((1, 8, 8), None),
              "transformer": ((2,), 5)}
    shape, vocab = shapes[name]
    with pytest.raises(ValueError, match=message):
        build(ArchSpec(name=name, width=8, options=options), shape, 2, vocab_size=vocab)


@pytest.mark.parametrize(
    "name, shape, vocab, message",
    [
        ("cnn2d", (1, 40), None, r"architecture 'cnn2d' needs image inputs \(C, H, W\); got input shape \(1, 40\)"),
        ("cnn1d", (1, 8, 8), None, r"architecture 'cnn1d' needs sequence inputs \(C, L\); got input shape \(1, 8, 8\)"),
        ("cnn1d", (2,), 5, r"needs sequence inputs \(C, L\); got token inputs \(2,\) with vocab_size=5"),
        ("resnet", (10,), None,
         r"'resnet' needs image inputs \(C, H, W\) or sequence inputs \(C, L\); got input shape \(10,\)"),
        ("transformer", (1, 40), None,
         r"'transformer' needs token inputs \(T,\) with a vocab_size; got input shape \(1, 40\)"),
        ("transformer", (2,), None,
         r"'transformer' needs token inputs \(T,\) with a vocab_size; got input shape \(2,\)"),
        ("mlp", (0, 3), None, r"input_shape must be a non-empty tuple of positive integers; got \(0, 3\)"),
    ],
)
def test_bad_input_shapes(name, shape, vocab, message):
    with pytest.raises(ValueError, match=message):
        build(ArchSpec(name=name, width=8), shape, 2, vocab_size=vocab)


def test_bad_n_outputs_and_spec_type():
    with pytest.raises(ValueError, match=r"n_outputs must be a positive integer; got 0"):
        build(ArchSpec(), (4,), 0)
    with pytest.raises(TypeError, match=r"build needs an engine.config.ArchSpec; got dict"):
        build({"name": "mlp"}, (4,), 2)


def test_mlp_one_hot_tokens_match_float_mlp_on_one_hot_inputs():
    tokens = torch.tensor([[0, 3], [2, 1]])
    token_mlp = build(ArchSpec(name="mlp", width=8), (2,), 3, vocab_size=4, seed=0)
    float_mlp = build(ArchSpec(name="mlp", width=8), (2, 4), 3, seed=0)
    one_hot = torch.nn.functional.one_hot(tokens, 4).float()  # (B, 2, 4)
    torch.testing.assert_close(token_mlp(tokens), float_mlp(one_hot))
