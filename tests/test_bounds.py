"""Bounded input: sweep files, seeds and sizes, names, non-finite floats (issue 14, part 3)."""

import math
import tracemalloc

import numpy as np
import pytest
import torch

from engine.bounds import (
    MAX_CHECKPOINTS,
    MAX_NAME_LENGTH,
    MAX_REPR,
    MAX_SWEEP_FILE_BYTES,
    SEED_MAX,
    check_file_size,
    check_name,
    printable,
    short_repr,
)
from engine.config import ArchSpec, ConfigError, DatasetSpec, OptimSpec, SweepSpec, TrainSpec, load_sweep
from engine.jobs.builtin_probes.landscape import SurfaceParams
from engine.train import train_run

# 9 aliases per level, 8 levels: 9**8 = 43 million strings once expanded (the 420-byte file).
LAUGHS = "\n".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefg", "bcdefgh")),
    "name: *h",
]) + "\n"


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(LAUGHS)
    assert len(LAUGHS) < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"laughs\.yaml: line 2 uses the YAML alias \*a; sweep files may not "
                                              r"use aliases") as info:
            load_sweep(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(str(info.value)) < 300
    assert peak < 5_000_000  # the expanded value (or its repr) would be hundreds of MB


def test_a_large_expanded_value_is_echoed_short(tmp_path):
    """Without aliases a big value can still reach validation: its repr in the error is cut."""
    big = tmp_path / "big.yaml"
    big.write_text("name: [" + ", ".join(["lol"] * 50_000) + "]\n")
    with pytest.raises(ConfigError, match=r"name: Input should be a valid string \(got \['lol', 'lol'") as info:
        load_sweep(big)
    assert len(str(info.value)) < 200
    with pytest.raises(ConfigError) as info:
        load_sweep({"grid": {"width": ["x" * 100_000]}})
    assert len(str(info.value)) < 400


def test_sweep_files_past_the_size_cap_are_refused_unread(tmp_path):
    f = tmp_path / "huge.toml"
    f.write_text('name = "z"\n' + "# padding\n" * (MAX_SWEEP_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"huge\.toml is larger than 1048576 bytes \(1 MiB\), the most a sweep file "
                                          r"may hold"):
        load_sweep(f)


def test_deeply_nested_and_non_utf8_files_are_explained(tmp_path):
    nested = ((tmp_path / "deep.yaml", "name: " + "[" * 100_000), (tmp_path / "deep.toml", "a = " + "[" * 100_000))
    for deep, text in nested:
        deep.write_text(text)
        with pytest.raises(ConfigError, match=r"deep\.(yaml|toml) nests tables or lists too deeply to be a sweep file"):
            load_sweep(deep)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin\.toml is not UTF-8 text \(byte 11\)"):
        load_sweep(latin)


def test_check_file_size_refuses_a_missing_or_larger_file_before_reading_it(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"x" * 1234)
    assert check_file_size(path, 1234, "metrics file") == 1234  # at the limit: allowed
    with pytest.raises(ValueError, match=r"^metrics file .*m\.csv has 1,234 bytes; at most 1,000 are read; thin it$"):
        check_file_size(path, 1000, "metrics file", fix="thin it")
    with pytest.raises(ValueError, match=r"^metrics file .*m\.csv has 1,234 bytes; at most 1,000 are read$"):
        check_file_size(str(path), 1000, "metrics file")
    with pytest.raises(ValueError, match=r"^manifest .*nope\.json does not exist$"):
        check_file_size(tmp_path / "nope.json", 1000, "manifest")
    with pytest.raises(ValueError, match=r"^image .* does not exist$"):  # a folder is not a file
        check_file_size(tmp_path, 1000, "image")

    class DataError(ValueError):
        pass

    with pytest.raises(DataError, match="at most 10 are read"):
        check_file_size(path, 10, "data file", error=DataError)


def test_short_repr_bounds_any_value():
    assert short_repr("abc") == "'abc'"
    assert len(short_repr("x" * 10**6)) == MAX_REPR
    nested = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9
    assert len(short_repr(nested)) <= MAX_REPR
    assert short_repr(10**5000) == "<int too large to print>"


@pytest.mark.parametrize("where", [{"base": {"seed": 10**29}}, {"base": {"dataset": {"seed": 10**29}}},
                                   {"grid": {"seed": [0, 2**32]}}])
def test_seeds_past_what_numpy_and_torch_take_are_refused(where):
    with pytest.raises(ConfigError, match=r"seed: Input should be less than or equal to 4294967295 \(got \d+\)"):
        load_sweep(where)


def test_the_largest_seed_trains():
    spec = TrainSpec(dataset=DatasetSpec(name="moons", seed=SEED_MAX), arch=ArchSpec(width=4), seed=SEED_MAX,
                     steps=2, batch_size=8, checkpoints=[2])
    result = train_run(spec)
    assert result.status == "done"
    np.random.seed(SEED_MAX)  # the MNIST-1D generator seeds NumPy's legacy RNG with the dataset seed
    torch.Generator().manual_seed(SEED_MAX + 7919)  # the batch order's offset
    assert SurfaceParams(seed=SEED_MAX).seed == SEED_MAX


@pytest.mark.parametrize(("data", "match"), [
    ({"base": {"arch": {"width": 10**6}}}, r"base\.arch\.width: Input should be less than or equal to 8192"),
    ({"base": {"arch": {"depth": 1000}}}, r"base\.arch\.depth: Input should be less than or equal to 64"),
    ({"base": {"batch_size": 10**7}}, r"base\.batch_size: Input should be less than or equal to 65536"),
    ({"base": {"steps": 10**12}}, r"base\.steps: Input should be less than or equal to 10000000"),
    ({"base": {"eval_size": 10**12}}, r"base\.eval_size: Input should be less than or equal to 1000000"),
    ({"base": {"checkpoints": "log:99999999999"}}, r"'log:N' \(1 <= N <= 1000\) or a list of steps; "
                                                   r"got 'log:99999999999'"),
    ({"base": {"steps": 10**6, "checkpoints": list(range(1, 2000))}}, r"1999 checkpoint steps are listed; at most "
                                                                      r"1000 are allowed"),
])
def test_sizes_are_bounded(data, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep(data)
    assert MAX_CHECKPOINTS == 1000


@pytest.mark.parametrize(("data", "match"), [
    ({"base": {"optim": {"name": "adamw", "eps": math.inf}}}, r"base\.optim\.eps: Input should be a finite number "
                                                              r"\(got inf\)"),
    ({"base": {"optim": {"lr": math.nan}}}, r"base\.optim\.lr: Input should be a finite number"),
    ({"base": {"optim": {"betas": [0.9, math.nan]}}}, r"base\.optim\.betas\.1: Input should be a finite number"),
    ({"base": {"arch": {"init_scale": -math.inf}}}, r"base\.arch\.init_scale: Input should be a finite number"),
    ({"grid": {"lr": [0.1, math.inf]}}, r"grid\.lr\.1: must be a finite number; got inf"),
    ({"base": {"dataset": {"name": "moons", "options": {"noise": math.nan}}}},
     r"base\.dataset\.options\.noise: must be a finite number; got nan"),
])
def test_non_finite_floats_are_refused_everywhere(data, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep(data)


def test_probe_parameters_refuse_non_finite_floats_and_huge_seeds():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="Input should be a finite number"):
        SurfaceParams(span=math.inf)
    with pytest.raises(ValidationError, match="less than or equal to 4294967295"):
        SurfaceParams(seed=10**29)
    with pytest.raises(ValueError, match="finite number"):
        OptimSpec(eps=math.inf)


@pytest.mark.parametrize(("name", "match"), [
    ("ok\x00zoo", r"zoo name contains control or format characters \(U\+0000\)"),
    ("\x1b[2J\x1b[31mred", r"zoo name contains control or format characters \(U\+001B\)"),
    ("evil\u202egpj.exe", r"zoo name contains control or format characters \(U\+202E\)"),
    ("two\nlines", r"\(U\+000A\)"),
    ("x" * 100_000, r"zoo name has 100000 characters; at most 100 are allowed \(got 'xxxx"),
    ("   ", r"zoo name must not be blank"),
])
def test_zoo_names_are_short_printable_text(name, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_sweep({"name": name})
    assert len(str(info.value)) < 300


def test_good_names_pass_and_are_stripped():
    assert SweepSpec(name="  Zoo ünïcode 🦒 ").name == "Zoo ünïcode 🦒"
    assert check_name("a" * MAX_NAME_LENGTH) == "a" * MAX_NAME_LENGTH


def test_printable_escapes_what_a_terminal_would_act_on():
    assert printable("a\x1b[2J\u202eb\x00") == "a\\x1b[2J\\u202eb\\x00"
    assert printable("plain ünïcode") == "plain ünïcode"
    assert printable("x" * 1000, limit=10) == "x" * 10 + "…"


def _int_fields_without_upper_bound(model) -> list[str]:
    """Integer fields of a pydantic model that accept any size (no ``le``/``lt`` in their metadata)."""
    import annotated_types

    out = []
    for name, field in model.model_fields.items():
        if field.annotation not in (int, int | None):
            continue
        if not any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in field.metadata):
            out.append(name)
    return out


def test_every_probe_kind_refuses_non_finite_floats_and_huge_seeds():
    """Every registered probe kind's parameters share SPEC_CONFIG (no NaN/inf) and the bounded Seed: a
    kind added later cannot slip past the rule the older ones follow."""
    from pydantic import ValidationError

    from engine.jobs.probe_job import get_probe_kind, probe_kinds

    builtin = [k for k in probe_kinds()  # other tests register kinds of their own in this process
               if get_probe_kind(k).run.__module__.startswith("engine.jobs.builtin_probes")]
    assert len(builtin) > 20
    for kind in builtin:
        params = get_probe_kind(kind).params
        assert params.model_config.get("allow_inf_nan") is False, f"{kind}: parameters accept NaN/inf"
        if "seed" in params.model_fields:
            with pytest.raises(ValidationError, match="less than or equal to 4294967295"):
                params(seed=2**80)


@pytest.mark.parametrize(("kind", "fields"), [
    ("rashomon.rid_population", ["n_samples", "ratio_max_params"]),
    ("prune.cell", ["n_samples"]),
    ("sweep.cell", ["n_samples"]),
])
def test_probe_sizes_have_upper_bounds(kind, fields):
    from engine.jobs.probe_job import get_probe_kind

    unbounded = _int_fields_without_upper_bound(get_probe_kind(kind).params)
    assert not set(fields) & set(unbounded), f"{kind}: {sorted(set(fields) & set(unbounded))} have no upper bound"


def test_prune_cell_refuses_more_densities_than_it_can_measure():
    from pydantic import ValidationError

    from engine.jobs.builtin_probes.phases import MAX_DENSITIES, PruneCellParams

    with pytest.raises(ValidationError, match=rf"at most {MAX_DENSITIES} densities .*; got 100000"):
        PruneCellParams(densities=tuple(i / 1e5 for i in range(1, 100_001)))
