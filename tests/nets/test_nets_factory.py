"""Architectures from the user's code: factories by import path, plugin folders, output adapters, refusals."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from user_models_fixtures import TINY_RESNET

from engine.config import ArchSpec, ConfigError, SweepSpec
from engine.nets import FactoryError, build, check_factory, plugins, use_plugins
from engine.nets.factory import adapt_output

pytestmark = pytest.mark.usefixtures("one_thread")


def hf_resnet(**overrides) -> ArchSpec:
    return ArchSpec(factory="transformers:ResNetForImageClassification", output="logits",
                    kwargs={"config": {**TINY_RESNET, **overrides}})


# -- building -------------------------------------------------------------------------------------

def test_plugin_factory_builds_seeded_like_builtins(plugin_dir):
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"width": 8, "n_classes": 3})
    a, b = build(spec, (1, 40), 3, seed=0), build(spec, (1, 40), 3, seed=0)
    c = build(spec, (1, 40), 3, seed=1)
    assert type(a).__name__ == "WideNet"
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.fc1.weight, c.fc1.weight)
    before = torch.random.get_rng_state()
    build(spec, (1, 40), 3, seed=5)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert a.training


def test_init_scale_applies_to_factory_models(plugin_dir):
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"n_classes": 3})
    base = build(spec, (1, 40), 3, seed=0)
    scaled = build(spec.model_copy(update={"init_scale": 2.0}), (1, 40), 3, seed=0)
    assert torch.allclose(scaled.fc1.weight, 2 * base.fc1.weight)


def test_torchvision_convention_with_stand_in(plugin_dir):
    spec = ArchSpec(factory="visionzoo.models:resnet18", kwargs={"num_classes": 10})
    model = build(spec, (1, 8, 8), 10, seed=0)
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_transformers_resnet_from_config():
    model = build(hf_resnet(), (1, 8, 8), 10, seed=0)
    assert isinstance(model, __import__("transformers").ResNetForImageClassification)
    out = model(torch.randn(3, 1, 8, 8))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10)
    # the adapter changes forward only: the state_dict keys are the model's own, deepcopy works
    assert next(iter(model.state_dict())).startswith("resnet.")
    twin = copy.deepcopy(model).eval()
    assert torch.equal(twin(torch.ones(1, 1, 8, 8)), model.eval()(torch.ones(1, 1, 8, 8)))


def test_output_adapters_match_the_raw_forward(plugin_dir):
    x = torch.randn(5, 1, 40)
    plain = build(ArchSpec(factory="my_models:WideNet", kwargs={"n_classes": 3}), (1, 40), 3, seed=0)
    tup = build(ArchSpec(factory="my_models:TupleNet", kwargs={"n_classes": 3}, output="0"), (1, 40), 3, seed=0)
    dic = build(ArchSpec(factory="my_models:DictNet", kwargs={"n_classes": 3}, output="logits"), (1, 40), 3, seed=0)
    assert torch.allclose(tup(x), plain(x)) and torch.allclose(dic(x), plain(x))
    # under functional_call too, which every probe uses
    params = {k: v + 0.1 for k, v in tup.state_dict().items()}
    assert torch.func.functional_call(tup, params, (x,)).shape == (5, 3)


def test_forward_check_leaves_batchnorm_statistics_alone():
    model = build(hf_resnet(), (1, 8, 8), 10, seed=0)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    fresh = adapt_output(__import__("transformers").ResNetForImageClassification(
        __import__("transformers").ResNetConfig(**TINY_RESNET)), "logits")
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in stats.items())


# -- errors, each naming the spec and the cause ---------------------------------------------------

def test_missing_module(plugin_dir):
    with pytest.raises(FactoryError, match=r"factory 'no_such_models:Net': no module named 'no_such_models'"):
        check_factory(ArchSpec(factory="no_such_models:Net"))


def test_missing_attribute(plugin_dir):
    with pytest.raises(FactoryError, match=r"'my_models' has no attribute 'Wide'; callables there include"):
        check_factory(ArchSpec(factory="my_models:Wide"))


def test_factory_that_raises(plugin_dir):
    with pytest.raises(FactoryError, match=r"factory 'my_models:raises' raised RuntimeError: width must be even"):
        check_factory(ArchSpec(factory="my_models:raises"))


def test_factory_that_returns_no_module(plugin_dir):
    with pytest.raises(FactoryError, match=r"'my_models:not_a_module' returned list \[8\], not a torch.nn.Module"):
        check_factory(ArchSpec(factory="my_models:not_a_module"))


def test_kwargs_mismatch(plugin_dir):
    with pytest.raises(FactoryError, match=r"kwargs \['depth'\] do not fit its signature .*width.*"
                                           r"unexpected keyword argument 'depth'"):
        check_factory(ArchSpec(factory="my_models:WideNet", kwargs={"depth": 3}))


def test_unknown_transformers_config_key_is_refused():
    with pytest.raises(FactoryError, match=r"config keys \['hiden_sizes'\] are not fields of ResNetConfig"):
        check_factory(hf_resnet(hiden_sizes=[4]))


def test_broken_import_says_why(plugin_dir):
    with pytest.raises(FactoryError, match=r"importing module 'brokenvision' failed: RuntimeError: operator "
                                           r"torchvision::nms does not exist \(torchvision's compiled operators "
                                           r"must match the installed torch"):
        check_factory(ArchSpec(factory="brokenvision:resnet18"))


def test_torchvision_absent_points_to_transformers(clean_plugins):
    if plugins.importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    with pytest.raises(FactoryError, match=r"no module named 'torchvision'.*transformers:ResNetForImageClassification"):
        check_factory(ArchSpec(factory="torchvision.models:resnet18", kwargs={"num_classes": 10}))


def test_wrong_output_shape_says_what_was_expected(plugin_dir):
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"n_classes": 7})
    with pytest.raises(FactoryError, match=r"logits of shape \(2, 7\) for a batch of 2; the dataset needs "
                                           r"\(2, 3\) \(3 outputs\)"):
        build(spec, (1, 40), 3)


def test_output_object_without_adapter_says_which_fields():
    spec = ArchSpec(factory="transformers:ResNetForImageClassification", kwargs={"config": TINY_RESNET})
    with pytest.raises(FactoryError, match=r"forward returned ImageClassifierOutputWithNoAttention "
                                           r"\(fields \['logits'\]\).*set output = \"logits\""):
        build(spec, (1, 8, 8), 10)


def test_forward_that_fails_on_the_data(plugin_dir):
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"in_features": 12, "n_classes": 3})
    with pytest.raises(FactoryError, match=r"forward failed on a dataset batch of shape \(2, 1, 40\) \(float32\)"):
        build(spec, (1, 40), 3)


# -- what may be imported -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, asked", [
    ({"weights": "DEFAULT"}, "weights='DEFAULT'"),
    ({"weights": "IMAGENET1K_V1"}, "weights='IMAGENET1K_V1'"),
    ({"pretrained": True}, "pretrained=True"),
])
def test_pretrained_weights_are_refused(plugin_dir, kwargs, asked):
    with pytest.raises(FactoryError, match=rf"asks for pretrained weights \({asked}\); Zooscope never downloads "
                                           r"weights.*`zooscope import-run DIR --factory module:callable`"):
        check_factory(ArchSpec(factory="visionzoo.models:resnet18", kwargs=kwargs))


def test_from_pretrained_route_is_refused():
    with pytest.raises(FactoryError, match=r"asks for pretrained weights \('.from_pretrained', "
                                           r"pretrained_model_name_or_path='microsoft/resnet-18'\).*import-run"):
        check_factory(ArchSpec(factory="transformers:ResNetForImageClassification.from_pretrained",
                               kwargs={"pretrained_model_name_or_path": "microsoft/resnet-18"}))


def test_weights_none_is_fine(plugin_dir):
    check_factory(ArchSpec(factory="visionzoo.models:resnet18", kwargs={"weights": None, "num_classes": 3}))


def test_installed_package_not_allowed(clean_plugins):
    with pytest.raises(FactoryError, match=r"module 'subprocess' .* is neither under a plugin folder \(none "
                                           r"configured\) nor an allowed installed package.*\[plugins\]"):
        check_factory(ArchSpec(factory="subprocess:run", kwargs={"args": ["true"]}))


def test_plugin_module_not_found_without_its_folder(tmp_path, clean_plugins):
    from plugin_fixtures import write_plugins

    write_plugins(tmp_path / "models")  # written, but not configured
    with pytest.raises(FactoryError, match=r"no module named 'my_models' in the plugin folders \(none configured\)"):
        check_factory(ArchSpec(factory="my_models:WideNet"))


def test_reexported_objects_from_other_modules_are_refused(plugin_dir):
    # my_models imports torch, so "my_models:torch.load" would resolve without this rule
    with pytest.raises(FactoryError, match=r"resolves to an object defined in 'torch.*', not in 'my_models'"):
        check_factory(ArchSpec(factory="my_models:torch.load"))


@pytest.mark.parametrize("bad", ["../models/x.py:f", "/abs/my_models:Net", "my_models", "my_models:Net;rm",
                                 "my_models:Net\n", "a" * 300 + ".b:Net"])
def test_factory_must_be_a_module_path(bad):
    with pytest.raises(ValueError, match=r"factory must be an import path 'package.module:callable'"):
        ArchSpec(factory=bad)


def test_dunder_attributes_are_refused(plugin_dir):
    with pytest.raises(FactoryError, match=r"dunder attributes \('WideNet.__init__.__globals__'\) are not allowed"):
        check_factory(ArchSpec(factory="my_models:WideNet.__init__.__globals__"))


def test_kwargs_without_factory_are_refused():
    with pytest.raises(ValueError, match=r"kwargs and output belong to a factory"):
        ArchSpec(name="mlp", kwargs={"width": 3})


def test_plugin_folder_must_exist(tmp_path, clean_plugins):
    with pytest.raises(ConfigError, match=r"plugins.paths: folder '.*nowhere' does not exist"):
        use_plugins([tmp_path / "nowhere"])


def test_sweep_with_factory_checks_before_queueing(plugin_dir):
    from engine.train import check_registered

    sweep = SweepSpec.model_validate({"base": {"dataset": {"name": "moons"},
                                               "arch": {"factory": "my_models:raises"}}})
    with pytest.raises(ConfigError, match=r"^base.arch.factory: factory 'my_models:raises' raised RuntimeError"):
        check_registered(sweep)


def test_token_model_returns_per_position_logits():
    gpt2 = {"vocab_size": 7, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 2}
    spec = ArchSpec(factory="transformers:GPT2LMHeadModel", output="logits", kwargs={"config": gpt2})
    model = build(spec, (4,), 7, vocab_size=7, seed=0)
    tokens = torch.randint(0, 7, (3, 4))
    assert model(tokens).shape == (3, 4, 7)
    wrong = ArchSpec(factory="transformers:GPT2LMHeadModel", output="logits",
                     kwargs={"config": {**gpt2, "vocab_size": 9}})
    with pytest.raises(FactoryError, match=r"shape \(2, 4, 9\) for a batch of 2; the dataset needs \(2, 7\) or "
                                           r"\(2, 4, 7\)"):
        build(wrong, (4,), 7, vocab_size=7)


def test_builtin_knobs_are_refused_with_a_factory():
    with pytest.raises(ValueError, match=r"options \['batchnorm'\] belong to the built-in architectures; pass the "
                                         r"arguments of factory 'my_models:WideNet' in kwargs"):
        ArchSpec(factory="my_models:WideNet", options={"batchnorm": True})
    with pytest.raises(ValueError, match=r"sweep axes \['width'\] set arch.width, which factory 'my_models:WideNet' "
                                         r"does not take"):
        SweepSpec.model_validate({"base": {"arch": {"factory": "my_models:WideNet"}}, "grid": {"width": [8, 16]}})


# -- hostile specs ---------------------------------------------------------------------------------

def test_installed_package_callable_that_is_not_a_model_is_refused_before_it_runs(tmp_path, clean_plugins):
    # transformers is allowed by default; its testing_utils run shell commands. Calling such a function
    # "to see whether it returns a module" would run the command on the server.
    marker = tmp_path / "pwned"
    spec = ArchSpec(factory="transformers.testing_utils:execute_subprocess_async",
                    kwargs={"cmd": ["touch", str(marker)], "quiet": True})
    with pytest.raises(FactoryError, match=r"names a function of the installed package 'transformers' that is not "
                                           r"declared to return an nn.Module.*plugin folder"):
        check_factory(spec)
    assert not marker.exists()


def test_installed_package_class_that_is_not_a_module_is_refused(clean_plugins):
    with pytest.raises(FactoryError, match=r"names class 'TrainingArguments' of the installed package 'transformers', "
                                           r"which is not a torch.nn.Module subclass"):
        check_factory(ArchSpec(factory="transformers:TrainingArguments", kwargs={"output_dir": "x"}))


def test_huge_width_is_refused_on_the_meta_device(plugin_dir):
    # 10^9 hidden units: 41e9 parameters, 164 GB; refused before any real allocation
    with pytest.raises(FactoryError, match=r"factory 'my_models:WideNet' builds a model of 4[0-9,]+ parameters and "
                                           r"buffers; at most 1,073,741,824 are allowed"):
        check_factory(ArchSpec(factory="my_models:WideNet", kwargs={"width": 10**9, "n_classes": 3}))


def test_build_counts_parameters_before_allocating(plugin_dir, monkeypatch):
    from engine.nets import factory as factory_module

    monkeypatch.setattr(factory_module, "MAX_MODEL_PARAMETERS", 100)
    real_calls = []
    monkeypatch.setattr(factory_module, "check_output_shape", lambda *a: real_calls.append(a))
    with pytest.raises(FactoryError, match=r"builds a model of 355 parameters and buffers; at most 100"):
        build(ArchSpec(factory="my_models:WideNet", kwargs={"width": 8, "n_classes": 3}), (1, 40), 3, seed=0)
    assert real_calls == []


def test_an_allowed_package_name_found_outside_the_environment_is_not_imported(tmp_path, clean_plugins):
    # 'timm' is allowed by default but not installed here; a timm.py in the working directory (on sys.path
    # for `python -m`) is not the installed package, and importing it would run its code
    marker = tmp_path / "ran"
    shadow = tmp_path / "cwd"
    shadow.mkdir()
    (shadow / "timm.py").write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\nNet = torch.nn.Linear\n")
    clean_plugins.setattr(sys, "path", [str(shadow), *sys.path])
    clean_plugins.delitem(sys.modules, "timm", raising=False)
    with pytest.raises(FactoryError, match=r"factory 'timm:Net': module 'timm' \(.*cwd/timm.py\) is not the "
                                           r"installed package .*plugin folder"):
        check_factory(ArchSpec(factory="timm:Net", kwargs={"in_features": 2, "out_features": 2}))
    assert not marker.exists()


def test_a_namespace_package_split_outside_the_plugin_folders_is_refused(tmp_path, plugin_dir, clean_plugins):
    # models/zoo_ns/ (no __init__.py) is a namespace package; a second portion elsewhere on sys.path
    # would supply zoo_ns.evil from outside the plugin folders
    marker = tmp_path / "ran"
    (plugin_dir / "zoo_ns").mkdir()
    other = tmp_path / "cwd" / "zoo_ns"
    other.mkdir(parents=True)
    (other / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                   "import torch\nclass Net(torch.nn.Linear): pass\n")
    clean_plugins.setattr(sys, "path", [str(tmp_path / "cwd"), *sys.path])
    for name in ("zoo_ns", "zoo_ns.evil"):
        clean_plugins.delitem(sys.modules, name, raising=False)
    with pytest.raises(FactoryError, match=r"factory 'zoo_ns.evil:Net': package 'zoo_ns' also lies outside the plugin "
                                           r"folders \('.*cwd/zoo_ns'\); give it an __init__.py"):
        check_factory(ArchSpec(factory="zoo_ns.evil:Net", kwargs={"in_features": 2, "out_features": 2}))
    assert not marker.exists()


def test_a_factory_that_builds_too_many_modules_is_stopped_while_it_builds(monkeypatch):
    # n_layer = 10**6 tiny GPT-2 blocks: few parameters, but ~10**7 module objects (tens of GB and most
    # of an hour in the server's sweep check); stopped at the bound, counted as submodules are registered
    from engine.nets import factory as factory_module

    monkeypatch.setattr(factory_module, "MAX_MODEL_MODULES", 50)
    spec = ArchSpec(factory="transformers:GPT2LMHeadModel", output="logits", kwargs={"config": {
        "n_layer": 1_000_000, "n_embd": 4, "n_head": 1, "vocab_size": 8, "n_positions": 8,
        "bos_token_id": 0, "eos_token_id": 0}})
    with pytest.raises(FactoryError, match=r"factory 'transformers:GPT2LMHeadModel' builds more than 50 submodules "
                                           r"\(engine.bounds.MAX_MODEL_MODULES\)"):
        check_factory(spec)
    small = spec.model_copy(update={"kwargs": {"config": {**spec.kwargs["config"], "n_layer": 1}}})
    check_factory(small)  # the budget is per call: a small model after a refused one builds
