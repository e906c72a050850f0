"""Which files are checkpoints, at which step: names, manifests, and every way that can go wrong."""

import json

import pytest
import torch
from safetensors.torch import save_file

import engine.importer.folder as folder_mod
from engine.importer import discover_checkpoints, step_from_name


@pytest.mark.parametrize(("stem", "expected"), [
    ("step_500", (500, None)), ("step-500", (500, None)), ("STEP500", (500, None)), ("model_step500", (500, None)),
    ("global_step_7", (7, None)), ("ckpt-1200", (1200, None)), ("checkpoint_3", (3, None)), ("iter100", (100, None)),
    ("epoch_3", (3, 3.0)), ("ep3", (3, 3.0)), ("epoch=3-step=1200", (1200, 3.0)), ("500", (500, None)),
    ("resnet18_step_5", (5, None)), ("best", None), ("split_3", None), ("resnet18", None),
])
def test_step_from_name(stem, expected):
    assert step_from_name(stem) == expected


def test_a_name_with_two_steps_is_refused():
    with pytest.raises(ValueError, match=r"file name 'step_5_iter_7' names more than one step or epoch \(\[5, 7\]\)"):
        step_from_name("step_5_iter_7")


def _touch(path, value=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.full((2,), value)}, str(path))


def test_files_are_found_by_step_and_other_files_left_alone(tmp_path):
    for name in ("step_20.safetensors", "step_0.pt", "ckpt-10.pth", "checkpoint-30/model.safetensors"):
        _touch(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".step_40.safetensors").write_text("hidden")
    found = discover_checkpoints(tmp_path)
    assert [(f.name, f.step) for f in found] == [("step_0.pt", 0), ("ckpt-10.pth", 10), ("step_20.safetensors", 20),
                                                 ("checkpoint-30/model.safetensors", 30)]


def test_duplicate_steps_are_named(tmp_path):
    _touch(tmp_path / "step_5.pt")
    _touch(tmp_path / "ckpt-5.safetensors")
    with pytest.raises(ValueError, match=r"more than one checkpoint file has the same step "
                                         r"\(step 5: ckpt-5.safetensors, step_5.pt\)"):
        discover_checkpoints(tmp_path)


def test_a_file_whose_step_cannot_be_read_is_named(tmp_path):
    _touch(tmp_path / "step_5.pt")
    _touch(tmp_path / "best.pt")
    with pytest.raises(ValueError, match=r"cannot read a step from the name of 'best.pt' in .*; name checkpoint "
                                         r"files like step_500.*or list them with their steps in a manifest.json"):
        discover_checkpoints(tmp_path)


def test_too_many_files_are_refused_before_any_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "MAX_CHECKPOINTS", 3)
    for i in range(4):
        (tmp_path / f"step_{i}.pt").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"holds more than 3 checkpoint files; one run may have at most 3"):
        discover_checkpoints(tmp_path)


def test_an_empty_folder_and_a_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"holds no checkpoint files \(names ending in .safetensors"):
        discover_checkpoints(tmp_path)
    _touch(tmp_path / "step_1.pt")
    with pytest.raises(ValueError, match=r"is not a folder; import-run takes a folder.*use `zooscope import`"):
        discover_checkpoints(tmp_path / "step_1.pt")


def test_a_manifest_names_files_steps_epochs_and_metrics(tmp_path):
    _touch(tmp_path / "best.pt")
    _touch(tmp_path / "last.pt")
    _touch(tmp_path / "step_99.pt")  # not listed: not imported
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": [
        {"file": "last.pt", "step": 900, "epoch": 3, "metrics": {"val_acc": 0.93}},
        {"file": "best.pt", "step": 500}]}))
    found = discover_checkpoints(tmp_path)
    assert [(f.name, f.step, f.epoch, f.metrics) for f in found] == [
        ("best.pt", 500, None, {}), ("last.pt", 900, 3.0, {"val_acc": 0.93})]


@pytest.mark.parametrize(("entry", "match"), [
    ({"file": "../outside.pt", "step": 1}, r"file '../outside.pt' lies outside the imported folder"),
    ({"file": "missing.pt", "step": 1}, r"file 'missing.pt' does not exist in"),
    ({"file": "a.pt", "step": -1}, r"'step' must be an integer in \[0, 10000000\]; got -1"),
    ({"file": "a.pt", "step": 1, "epoch": "x"}, r"'epoch' must be a finite number; got 'x'"),
    ({"file": "a.pt", "step": 1, "metrics": {"acc": "high"}}, r"'metrics' must map names to numbers"),
    ({"file": "a.pt", "step": 1, "lr": 0.1}, r"unknown keys \['lr'\]"),
])
def test_bad_manifest_entries_are_explained(tmp_path, entry, match):
    run = tmp_path / "run"
    _touch(run / "a.pt")
    _touch(tmp_path / "outside.pt")
    (run / "manifest.json").write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match=r"manifest .*manifest.json, checkpoint 0: " + match):
        discover_checkpoints(run)


def test_an_oversized_manifest_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "MAX_IMPORT_SIDE_FILE_BYTES", 10)
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": []}))
    with pytest.raises(ValueError, match=r"manifest .* has 19 bytes; at most 10 are read"):
        discover_checkpoints(tmp_path)


# -- hostile files ----------------------------------------------------------------------------------

def test_a_deflate_bomb_is_refused_by_its_decompressed_size(tmp_path, monkeypatch):
    import zipfile

    import engine.importer.weights as weights_mod

    plain, bomb = tmp_path / "plain.pt", tmp_path / "step_1.pt"
    torch.save({"w": torch.zeros(2_000_000)}, plain)  # 8 MB of zeros ...
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    assert bomb.stat().st_size < 100_000  # ... in a file of a few KB, which torch.load inflates
    monkeypatch.setattr(weights_mod, "MAX_IMPORT_WEIGHTS_BYTES", 1 << 20)
    with pytest.raises(ValueError, match=r"step_1.pt decompresses to 8,00\d,\d+ bytes; a weights file may hold at "
                                         r"most 1,048,576"):
        weights_mod.load_weights(bomb)


def test_a_link_to_a_file_outside_the_folder_is_refused(tmp_path):
    outside = tmp_path / "private" / "secret.safetensors"
    outside.parent.mkdir()
    save_file({"w": torch.zeros(2)}, str(outside))
    run = tmp_path / "run"
    run.mkdir()
    save_file({"w": torch.zeros(2)}, str(run / "step_0.safetensors"))
    (run / "step_1.safetensors").symlink_to(outside)
    (run / "checkpoint-2").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(ValueError, match=r"checkpoint-2/secret.safetensors, step_1.safetensors in .*run lead outside "
                                         r"it \(symbolic links\); copy the files into the folder"):
        discover_checkpoints(run)
