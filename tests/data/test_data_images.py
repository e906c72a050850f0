"""Images from the user's files: folders, NPZ and Parquet arrays, normalisation and bounds."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from engine.data import DatasetError, load
from engine.data import images as zimages


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root, classes=("cat", "dog", "fox"), n=12, shape=(8, 6, 3), seed=0):
    rng = np.random.default_rng(seed)
    pixels = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = (rng.random(shape) * 255).astype(np.uint8)
            (root / c / f"{i:03d}.png").write_bytes(_png(a))
            pixels[(c, i)] = a
    return pixels


def test_image_folder_round_trip_with_train_normalisation(tmp_path):
    _folder(tmp_path / "f")
    (tmp_path / "f" / "cat" / "notes.txt").write_text("not an image")  # other files are skipped
    ds = load({"name": "imagefolder", "path": str(tmp_path / "f")})
    assert ds.class_names == ["cat", "dog", "fox"] and ds.task == "classification"
    assert ds.input_shape == (3, 8, 6) and ds.n_train + ds.n_test == 36
    mean, std = ds.x_train.mean((0, 2, 3)), ds.x_train.std((0, 2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-5, rtol=0)
    assert ds.normalization["axis"] == 1 and len(ds.normalization["mean"]) == 3
    raw = load({"name": "imagefolder", "path": str(tmp_path / "f"), "options": {"normalize": False}})
    assert float(raw.x_train.min()) >= 0.0 and float(raw.x_train.max()) <= 1.0 and raw.normalization is None
    m = torch.tensor(ds.normalization["mean"]).view(1, 3, 1, 1)
    s = torch.tensor(ds.normalization["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close((raw.x_test - m) / s, ds.x_test, atol=1e-5, rtol=0)  # test uses train stats


def test_image_folder_pixels_and_labels_match_the_files(tmp_path):
    pixels = _folder(tmp_path / "f", n=3)
    ds = load({"name": "imagefolder", "path": str(tmp_path / "f"), "options": {"normalize": False}, "test_size": 0.34})
    x = torch.cat([ds.x_train, ds.x_test]).numpy()
    y = torch.cat([ds.y_train, ds.y_test]).numpy()
    for (c, _i), a in pixels.items():
        want = a.transpose(2, 0, 1).astype(np.float32) / 255  # (C, H, W)
        hits = [k for k in range(len(x)) if np.allclose(x[k], want)]
        assert len(hits) == 1 and y[hits[0]] == ds.class_names.index(c)


def test_train_test_subfolders_are_the_split(tmp_path):
    _folder(tmp_path / "f" / "train", n=5)
    _folder(tmp_path / "f" / "test", n=2, seed=1)
    ds = load({"name": "imagefolder", "path": str(tmp_path / "f")})
    assert (ds.n_train, ds.n_test) == (15, 6) and ds.class_names == ["cat", "dog", "fox"]


def test_grayscale_and_resize(tmp_path):
    root = tmp_path / "g"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((10 + i, 7), 40 * i, np.uint8), mode="L").save(root / c / f"{i}.png")
    with pytest.raises(DatasetError, match=r"give every image one size, or set the option size='HxW'"):
        load({"name": "imagefolder", "path": str(root)})
    ds = load({"name": "imagefolder", "path": str(root), "options": {"size": "8x8"}})
    assert ds.input_shape == (1, 8, 8)
    assert load({"name": "imagefolder", "path": str(root), "options": {"size": "8x8", "channels": "rgb"}}
                ).input_shape == (3, 8, 8)


def test_corrupt_image_is_named(tmp_path):
    _folder(tmp_path / "f", n=2)
    bad = tmp_path / "f" / "dog" / "broken.png"
    bad.write_bytes(_png(np.zeros((8, 6, 3), np.uint8))[:40])  # a truncated PNG
    with pytest.raises(DatasetError, match=rf"{bad} is not a readable image \(.*\); replace or remove it"):
        load({"name": "imagefolder", "path": str(tmp_path / "f")})


def test_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    _folder(tmp_path / "f", n=2)
    monkeypatch.setattr(zimages, "MAX_IMAGE_PIXELS", 40)  # the 8x6 images hold 48 pixels
    with pytest.raises(DatasetError, match=r"000.png is 6x8 pixels, more than the 40 an image may have "
                                           r"\(a decompression bomb"):
        load({"name": "imagefolder", "path": str(tmp_path / "f")})


def test_byte_and_count_caps(tmp_path, monkeypatch):
    _folder(tmp_path / "f", n=4)
    monkeypatch.setenv("ZOOSCOPE_MAX_DATA_BYTES", "1000")
    with pytest.raises(DatasetError, match=r"holds [0-9,]+ bytes of images, more than the 1,000 bytes a data set may "
                                           r"take; use a subset, or raise \$ZOOSCOPE_MAX_DATA_BYTES"):
        load({"name": "imagefolder", "path": str(tmp_path / "f")})
    monkeypatch.delenv("ZOOSCOPE_MAX_DATA_BYTES")
    monkeypatch.setattr(zimages, "MAX_IMAGE_FILE_BYTES", 100)
    with pytest.raises(DatasetError, match=r"image .*000.png has [0-9,]+ bytes; at most 100 are read; "
                                           r"shrink it or leave it out"):
        load({"name": "imagefolder", "path": str(tmp_path / "f")})
    monkeypatch.setattr(zimages, "MAX_IMAGE_FILE_BYTES", 32 << 20)
    monkeypatch.setattr(zimages, "MAX_IMAGE_FILES", 10)
    with pytest.raises(DatasetError, match=r"holds more than 10 images; use a subset"):
        load({"name": "imagefolder", "path": str(tmp_path / "f")})


def test_class_names_and_layout_are_checked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"has no class folders; put each class's images in root/<class>/"):
        load({"name": "imagefolder", "path": str(tmp_path / "empty")})
    with pytest.raises(DatasetError, match=r"image folder '.*nowhere' does not exist or is not a folder"):
        load({"name": "imagefolder", "path": str(tmp_path / "nowhere")})
    _folder(tmp_path / "long", classes=("x" * 101,), n=1)
    with pytest.raises(DatasetError, match=r"class folder name has 101 characters; at most 100 are allowed"):
        load({"name": "imagefolder", "path": str(tmp_path / "long")})


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_npz_image_arrays_in_either_layout(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = (rng.random((40, 3, 5, 7)) * 255).astype(np.uint8)  # (N, C, H, W)
    y = np.arange(40) % 4
    stored = x if layout == "nchw" else x.transpose(0, 2, 3, 1)
    np.savez(tmp_path / "a.npz", x=stored, y=y)
    ds = load({"name": "images", "path": str(tmp_path / "a.npz"), "options": {"layout": layout, "normalize": False}})
    assert ds.input_shape == (3, 5, 7) and ds.n_outputs == 4
    both = torch.cat([ds.x_train, ds.x_test])
    assert {tuple(v) for v in (both * 255).round().flatten(1).int().tolist()} == \
        {tuple(v) for v in x.reshape(40, -1).tolist()}
    other = "nhwc" if layout == "nchw" else "nchw"
    if layout == "nhwc":  # read the wrong way, 5 rows look like 5 channels
        with pytest.raises(DatasetError, match=rf"read as layout='{other}' has 5 channels .*is it layout='{layout}'\?"):
            load({"name": "images", "path": str(tmp_path / "a.npz"), "options": {"layout": other}})


def test_parquet_of_encoded_images(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [(rng.random((6, 6, 3)) * 255).astype(np.uint8) for _ in range(20)]
    labels = ["left" if i % 2 else "right" for i in range(20)]
    pd.DataFrame({"image": [{"bytes": _png(a), "path": None} for a in arrays], "label": labels}).to_parquet(
        tmp_path / "hf.parquet")
    ds = load({"name": "images", "path": str(tmp_path / "hf.parquet")})
    assert ds.input_shape == (3, 6, 6) and ds.class_names == ["left", "right"]
    pd.DataFrame({"png": [_png(a) for a in arrays], "y": labels}).to_parquet(tmp_path / "plain.parquet")
    ds = load({"name": "images", "path": str(tmp_path / "plain.parquet"), "label": "y",
               "options": {"image_column": "png"}})
    assert ds.n_train + ds.n_test == 20
    with pytest.raises(DatasetError, match=r"has no column 'image' \(columns are \['png', 'y'\]\)"):
        load({"name": "images", "path": str(tmp_path / "plain.parquet"), "label": "y"})


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_parquet_of_pixel_arrays_nested_or_flat(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = (rng.random((12, 3, 4, 5)) * 255).astype(np.uint8)  # (N, C, H, W)
    stored = x if layout == "nchw" else x.transpose(0, 2, 3, 1)
    y = np.arange(12) % 3
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = pa.array([a.tolist() for a in stored], type=pa.list_(pa.list_(pa.list_(pa.uint8()))))
    pq.write_table(pa.table({"image": nested, "label": y}), tmp_path / "nested.parquet")
    ds = load({"name": "images", "path": str(tmp_path / "nested.parquet"),
               "options": {"layout": layout, "normalize": False}})
    assert ds.input_shape == (3, 4, 5)
    both = torch.cat([ds.x_train, ds.x_test])
    assert sorted(map(tuple, (both * 255).round().int().flatten(1).tolist())) == \
        sorted(map(tuple, x.reshape(12, -1).tolist()))
    flat = pa.array([a.reshape(-1).tolist() for a in stored], type=pa.list_(pa.uint8()))
    pq.write_table(pa.table({"image": flat, "label": y}), tmp_path / "flat.parquet")
    with pytest.raises(DatasetError, match=r"holds flat pixel lists of 60; set the option shape, e.g. '3x32x32'"):
        load({"name": "images", "path": str(tmp_path / "flat.parquet"), "options": {"layout": layout}})
    shape = "3x4x5" if layout == "nchw" else "4x5x3"
    ds = load({"name": "images", "path": str(tmp_path / "flat.parquet"),
               "options": {"layout": layout, "shape": shape, "normalize": False}})
    assert torch.equal(torch.cat([ds.x_train, ds.x_test]).sort(0).values, both.sort(0).values)


def test_label_count_and_label_length_are_bounded(tmp_path):
    np.savez(tmp_path / "many.npz", x=np.zeros((20_002, 1, 1, 1), np.uint8), y=np.arange(20_002))
    with pytest.raises(DatasetError, match=r"the labels take 20,002 distinct values"):
        load({"name": "images", "path": str(tmp_path / "many.npz")})
    np.savez(tmp_path / "many_str.npz", x=np.zeros((10_002, 1, 1, 1), np.uint8),
             y=np.array([f"c{i}" for i in range(10_002)]))
    with pytest.raises(DatasetError, match=r"the labels take 10,002 distinct values; a classification data set has "
                                           r"at most 10,000 classes"):
        load({"name": "images", "path": str(tmp_path / "many_str.npz")})
    np.savez(tmp_path / "long.npz", x=np.zeros((4, 1, 2, 2), np.uint8), y=np.array(["a", "b", "a", "x" * 101]))
    with pytest.raises(DatasetError, match=r"has 101 characters; class names have at most 100"):
        load({"name": "images", "path": str(tmp_path / "long.npz")})
