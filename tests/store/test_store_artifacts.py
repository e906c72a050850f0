"""Content-addressed safetensors artifacts: round-trip, idempotence, corruption."""

from __future__ import annotations

import os

import pytest
import torch

import store


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"fc.weight": torch.randn(4, 3, generator=g), "fc.bias": torch.zeros(4),
            "bn.num_batches_tracked": torch.tensor(7), "emb": torch.randn(3, 2, generator=g).half()}


def test_round_trip_preserves_dtype_shape_values(st):
    tensors = _tensors()
    sha = st.put_tensors(tensors)
    path = st.artifact_path(sha)
    assert path == st.path / "artifacts" / sha[:2] / f"{sha}.safetensors" and path.is_file()
    back = st.get_tensors(sha)
    assert back.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor)
    assert st.table_counts()["artifact"] == 1


def test_put_is_idempotent_and_does_not_rewrite(st):
    sha = st.put_tensors(_tensors())
    path = st.artifact_path(sha)
    os.utime(path, (1, 1))
    assert st.put_tensors({k: v.clone() for k, v in _tensors().items()}) == sha
    assert path.stat().st_mtime == 1  # untouched
    assert st.table_counts()["artifact"] == 1
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_views_non_contiguous_and_shared_tensors_are_stored(st):
    stacked = torch.arange(24.0).reshape(4, 6)
    tensors = {"a": stacked[1], "b": stacked[2], "t": stacked.t(), "tied": stacked[1]}
    back = st.get_tensors(st.put_tensors(tensors))
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor)


def test_flipped_byte_raises_corrupt_error_naming_sha(st):
    sha = st.put_tensors(_tensors())
    path = st.artifact_path(sha)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(store.CorruptArtifactError,
                       match=rf"artifact {sha} is corrupt: .*{sha}.safetensors hashes to") as info:
        st.get_tensors(sha)
    assert info.value.sha == sha and info.value.path == path


def test_missing_and_unparseable_artifacts(st, tmp_path):
    missing = "0" * 64
    with pytest.raises(store.CorruptArtifactError, match=f"artifact {missing} is missing: no file at"):
        st.get_tensors(missing)
    import hashlib

    junk = b"not a safetensors file"
    sha = hashlib.sha256(junk).hexdigest()
    st.artifact_path(sha).parent.mkdir(parents=True, exist_ok=True)
    st.artifact_path(sha).write_bytes(junk)
    with pytest.raises(store.CorruptArtifactError, match=f"artifact {sha} .* not a valid safetensors file"):
        st.get_tensors(sha)
    with pytest.raises(ValueError, match="artifact sha must be 64 lowercase hex characters; got 'abc'"):
        st.get_tensors("abc")


def test_bad_inputs_are_explained(st):
    with pytest.raises(ValueError, match="non-empty dict"):
        st.put_tensors({})
    with pytest.raises(TypeError, match=r"str -> torch.Tensor; got str -> list for key 'w'"):
        st.put_tensors({"w": [1.0]})


def test_worker_functions_need_only_the_folder(st):
    sha = store.put_tensors_at(st.path, {"w": torch.ones(2)})
    assert torch.equal(store.get_tensors_at(str(st.path), sha)["w"], torch.ones(2))
    row = store.artifact_row(st.path, sha, kind="probe")
    assert row["sha"] == sha and row["size_bytes"] == st.artifact_path(sha).stat().st_size
    assert st.table_counts()["artifact"] == 0  # the catalog learns of it from the worker's bundle
    with pytest.raises(store.StoreError, match="no store at .*missing artifacts/"):
        store.put_tensors_at(st.path / "nowhere", {"w": torch.ones(1)})


def test_gc_removes_only_unreferenced_old_files(st):
    (run,) = st.add_runs([{"name": "r"}])
    kept = st.put_tensors({"w": torch.ones(2)})
    st.add_checkpoint(run, 1, kept)
    dropped = st.put_tensors({"w": torch.zeros(2)})
    assert st.gc_artifacts() == []  # too young: may belong to a bundle not yet ingested
    assert st.gc_artifacts(min_age_s=-1) == [dropped]
    assert st.has_artifact(kept) and not st.has_artifact(dropped)
    assert st.table_counts()["artifact"] == 1


def test_putting_equal_tensors_over_a_corrupt_file_of_the_same_size_repairs_it(st):
    """A damaged file is not taken for the artifact just because its size matches: it is rewritten."""
    tensors = _tensors()
    sha = st.put_tensors(tensors)
    path = st.artifact_path(sha)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, wrong bytes
    path.write_bytes(bytes(data))
    with pytest.raises(store.CorruptArtifactError, match="is corrupt"):
        st.get_tensors(sha)
    with pytest.warns(UserWarning, match=rf"artifact {sha} at .* was damaged on disk .* rewrote it"):
        assert st.put_tensors({k: v.clone() for k, v in tensors.items()}) == sha
    assert all(torch.equal(st.get_tensors(sha)[k], v) for k, v in tensors.items())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # repaired in place, no temp files left


def test_an_artifact_is_hashed_once_per_process_until_the_file_changes(st, monkeypatch):
    import hashlib

    from store import artifacts

    artifacts.clear_caches()
    monkeypatch.setattr(artifacts, "_RACY_NS", 0)  # the file was written just now: trust it at once here
    sha = st.put_tensors(_tensors())
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(artifacts.hashlib, "sha256", lambda data=b"": hashed.append(len(data)) or real(data))
    for _ in range(3):
        assert torch.equal(st.get_tensors(sha)["fc.weight"], _tensors()["fc.weight"])
    assert len(hashed) == 1
    artifacts.clear_caches()
    st.get_tensors(sha)
    assert len(hashed) == 2


def test_an_artifact_changed_in_place_is_still_caught(st):
    """Same size, same inode, mtime set back: a file verified this recently is hashed again
    (its ctime may not have moved within the filesystem's timestamp granularity); an older one
    is hashed again because its ctime moved."""
    sha = st.put_tensors(_tensors())
    path = st.artifact_path(sha)
    st.get_tensors(sha)  # verified once
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    with open(path, "r+b") as fh:  # in place: same inode, same size
        fh.write(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(store.CorruptArtifactError, match=rf"artifact {sha} is corrupt"):
        st.get_tensors(sha)
