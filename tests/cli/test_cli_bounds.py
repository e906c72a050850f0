"""The CLI prints stored names safely and refuses unusable imports (issue 14, part 3)."""

import math
import re

import pytest
import torch
from safetensors.torch import save_file

import store
from engine import data as zdata
from engine import nets
from engine.cli import main
from engine.config import ArchSpec, DatasetSpec
from engine.importer import import_weights, record_import


def test_ls_escapes_control_characters_in_names_already_stored(tmp_path, capsys):
    s = tmp_path / "store"
    with store.open_store(s) as st:  # written directly, as by a version that did not check names
        st.create_zoo("evil\x1b[2J\x1b]0;pwned\x07\u202egpj\x00" + "x" * 5000, owner="mallory\x1b[31m")
    assert main(["--store", str(s), "ls", "zoos"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x00" not in out and "\u202e" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07\\u202egpj\\x00" in out and "mallory\\x1b[31m" in out
    assert max(len(line) for line in out.splitlines()) < 1000  # a 5000-character name is cut


def _weights(tmp_path, change):
    ds = zdata.load("moons")
    model = nets.build(ArchSpec(name="mlp", width=8, depth=2), ds.input_shape, ds.n_outputs, seed=0)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(change(state), str(path))
    return path


@pytest.mark.parametrize(("change", "match"), [
    (lambda s: {k: torch.full_like(v, math.nan) for k, v in s.items()},
     r"^'head\.bias' \(2 of 2\), 'head\.weight' \(16 of 16\), .* and 1 more hold NaN/inf values; these are not "
     r"usable weights"),
    (lambda s: {k: v.round().to(torch.int64) for k, v in s.items()},
     r"^'head\.bias', 'head\.weight', 'layers\.0\.linear\.bias', .* and 1 more have dtype torch\.int64, but the "
     r"architecture holds weights in floating point"),
    (lambda s: {**s, "head.bias": s["head.bias"].clone().fill_(math.inf)},
     r"^'head\.bias' \(2 of 2\) holds NaN/inf values; these are not usable weights"),
])
def test_import_refuses_non_finite_or_integer_weights_naming_the_tensor(tmp_path, change, match):
    path = _weights(tmp_path, change)
    with pytest.raises(ValueError, match=match):
        import_weights(path, ArchSpec(name="mlp", width=8, depth=2), DatasetSpec(name="moons"))


def test_cli_import_of_nan_weights_fails_and_writes_nothing(tmp_path, capsys):
    s = tmp_path / "store"
    path = _weights(tmp_path, lambda st: {k: torch.full_like(v, math.nan) for k, v in st.items()})
    assert main(["--store", str(s), "import", str(path), "--arch", "mlp", "--width", "8", "--dataset", "moons"]) == 2
    assert "NaN/inf values" in capsys.readouterr().err
    assert not s.exists()


@pytest.mark.parametrize(("flag", "value", "match"), [
    ("--zoo", "z" * 101, r"zoo name has 101 characters; at most 100 are allowed"),
    ("--name", "run\x1b[2J", r"run name contains control or format characters \(U\+001B\)"),
])
def test_import_refuses_bad_names_before_writing(tmp_path, capsys, flag, value, match):
    s = tmp_path / "store"
    path = _weights(tmp_path, lambda st: st)
    assert main(["--store", str(s), "import", str(path), "--arch", "mlp", "--width", "8", "--dataset", "moons",
                 flag, value]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not s.exists()
    with pytest.raises(ValueError, match=match), store.open_store(s) as st:
        record_import(st, "z" * 101 if flag == "--zoo" else "zoo", None, name=value if flag == "--name" else "run",
                      owner="me")
    with store.open_store(s) as st:
        assert st.table_counts()["zoo"] == 0
