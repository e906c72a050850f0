import pytest

from engine.config import ArchSpec, ConfigError, SweepSpec, TrainSpec, checkpoint_steps, load_sweep, spec_hash
from engine.train import check_registered


def test_demo_config_expands_to_its_grid():
    sweep = load_sweep("configs/demo.toml")
    runs = sweep.expand()
    assert sweep.n_runs == len(runs) == 18
    assert {r.arch.width for r in runs} == {32, 64, 128}
    assert sweep.hyperparameters(runs[0]) == {"width": 32, "lr": 0.01, "seed": 0}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"base": {"arch": {"width": 0}}}, r"base\.arch\.width: .*greater than or equal to 1 \(got 0\)"),
        ({"grid": {"lr": [0.1, -1]}}, r"grid point \(lr=-1\) is invalid: optim\.lr"),
        ({"grid": {"learning_rate": [0.1]}}, r"unknown sweep axis 'learning_rate'; allowed: width"),
        ({"grid": {"seed": []}}, r"sweep axis 'seed' has no values"),
        ({"grid": {"seed": [1, 1]}}, r"repeats a value"),
        ({"base": {"checkpoints": "every:3"}}, r"checkpoint schedule must be 'linear:N', 'log:N'"),
        ({"base": {"steps": 10, "checkpoints": [5, 20]}}, r"checkpoint step 20 is past the last step \(10\)"),
        ({"base": {"optim": {"name": "lbfgs"}}}, r"base\.optim\.name: .*'sgd', 'momentum' or 'adamw'"),
        ({"base": {"optim": {"betas": [0.9, 1.5]}}}, r"each beta must be in \[0, 1\); got 1\.5"),
        ({"base": {"dataset": {"label_noise": 1.0}}}, r"label_noise: .*less than 1"),
        ({"base": {"batchsize": 3}}, r"base\.batchsize: Extra inputs are not permitted"),
        ({"grid": {"width": [8]}, "temperature": ["lr"]}, r"phase axis 'lr' is not a sweep axis"),
    ],
)
def test_invalid_values_name_field_value_and_range(data, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"base": {"dataset": {"name": "imagenet"}}},
         r"base\.dataset\.name: unknown dataset 'imagenet'; available: .*mnist1d"),
        ({"base": {"arch": {"name": "vgg"}}},
         r"base\.arch\.name: unknown architecture 'vgg'; available: cnn1d, cnn2d, mlp"),
    ],
)
def test_unregistered_names_are_refused_where_the_registries_are(data, match):
    """Specs stay pure (engine.config imports no registry); the boundaries check names with check_registered."""
    sweep = load_sweep(data)  # structurally valid
    with pytest.raises(ConfigError, match=match):
        check_registered(sweep)
    with pytest.raises(ConfigError, match=match.removeprefix(r"base\.")):
        check_registered(sweep.base)


def test_single_run_file_becomes_one_run_zoo(tmp_path):
    f = tmp_path / "one.yaml"
    f.write_text("name: solo\narch: {name: mlp, width: 16}\nsteps: 10\n")
    sweep = load_sweep(f)
    assert sweep.name == "solo" and sweep.n_runs == 1 and sweep.expand()[0].arch.width == 16


def test_bad_files_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_sweep(bad)
    other = tmp_path / "x.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match=r"must end in \.toml, \.yaml or \.yml"):
        load_sweep(other)


@pytest.mark.parametrize("schedule", ["linear:4", "log:5", [3, 7]])
def test_checkpoint_schedules_include_init_and_end(schedule):
    steps = checkpoint_steps(schedule, 100)
    assert steps[0] == 0 and steps[-1] == 100 and steps == sorted(set(steps))


def test_linear_and_log_schedules():
    assert checkpoint_steps("linear:4", 100) == [0, 25, 50, 75, 100]
    assert checkpoint_steps("log:2", 100) == [0, 10, 100]


def test_specs_are_frozen_and_hash_stably():
    a, b = TrainSpec(arch=ArchSpec(width=8)), TrainSpec(arch=ArchSpec(width=8))
    assert spec_hash(a) == spec_hash(b) != spec_hash(TrainSpec(arch=ArchSpec(width=9)))
    with pytest.raises(Exception, match="frozen"):
        a.batch_size = 3


def test_sweep_rejects_too_many_runs():
    with pytest.raises(ConfigError, match="at most 10000"):
        load_sweep({"grid": {"seed": list(range(101)), "width": list(range(1, 101))}})


def test_sweepspec_defaults_are_valid():
    assert SweepSpec().n_runs == 1
