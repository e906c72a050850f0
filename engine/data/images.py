"""Images from the user's files: a class-per-subfolder tree, or arrays of images in NPZ / Parquet.

``imagefolder`` reads the layout of torchvision's ``ImageFolder``::

    root/<class>/<image>.png|jpg|jpeg|bmp          one split, held out by spec.test_size
    root/train/<class>/...  root/test/<class>/...  the folder's own split

``images`` reads arrays of images: an NPZ with ``x, y`` (or ``x_train, y_train, x_test,
y_test``) whose ``x`` is ``(N, C, H, W)`` (``layout="nchw"``, the default), ``(N, H, W, C)``
(``layout="nhwc"``) or ``(N, H, W)`` (one channel); or a Parquet table with a column of
encoded images (PNG/JPEG bytes, or Hugging Face's ``{"bytes": ..., "path": ...}`` structs) or
of pixel arrays (nested lists in ``layout``, or flat lists with the option ``shape``), named by
the option ``image_column``, and a label column (``spec.label``, default ``"label"``).

Every image becomes float32 ``(C, H, W)`` in ``[0, 1]`` (8-bit pixels divided by 255), and
by default each channel is normalised with its mean and standard deviation over the training
split (``Dataset.normalization`` records them; a registered data set stores them once, so every
worker and probe applies the same numbers).

Bounded before decoding: the number of files, each file's bytes, each image's pixel count
(read from its header, so a decompression bomb is refused unopened), the total bytes on disk
and once decoded (:func:`engine.data.files.max_data_bytes`, ``$ZOOSCOPE_MAX_DATA_BYTES``), the
number of classes and the length of class names. A file that does not decode is named in the
error.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.bounds import MAX_NAME_LENGTH, check_file_size, check_name, short_repr
from engine.config import DatasetSpec
from engine.data.dataset import DatasetError, SourceData, check_option
from engine.data.files import (
    MAX_CLASSES,
    MAX_DATA_BYTES_ENV,
    check_data_file_size,
    encode_labels,
    max_data_bytes,
    npz_headers,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_CLASSES",
    "MAX_IMAGE_FILES",
    "MAX_IMAGE_FILE_BYTES",
    "MAX_IMAGE_PIXELS",
    "content_sha256",
    "folder_files",
    "load_imagefolder",
    "load_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_IMAGE_FILES = 200_000  # images of one data set (a folder, or rows of a Parquet table)
MAX_IMAGE_FILE_BYTES = 32 << 20  # one encoded image (32 MiB)
MAX_IMAGE_PIXELS = 4096 * 4096  # one image's width x height, from its header (PIL's own bomb limit is 89 M)
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass(frozen=True)
class ImageFile:
    """One image file of a folder: its path, class id and split."""

    path: Path
    label: int
    split: str  # "train", "test" or "all"


def _check_options(name: str, layout: str, channels: str, size: str) -> tuple[int, int] | None:
    """The target ``(H, W)`` of option ``size`` (None: keep), after checking every option."""
    check_option(layout in ("nchw", "nhwc"), name, "layout", layout, "'nchw' or 'nhwc'")
    check_option(channels in ("auto", "rgb", "gray"), name, "channels", channels, "'auto', 'rgb' or 'gray'")
    if not size:
        return None
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        h = w = 0
    check_option(1 <= h <= 4096 and 1 <= w <= 4096, name, "size", size,
                 "'' (keep the images' own size) or 'HxW' with sides in 1..4096, e.g. '32x32'")
    return h, w


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if len(dirs) > MAX_CLASSES:
        raise DatasetError(f"{root} has {len(dirs):,} class folders; at most {MAX_CLASSES:,} classes are read")
    for d in dirs:
        try:
            check_name(d.name, "class folder name", MAX_NAME_LENGTH)
        except ValueError as exc:
            raise DatasetError(f"{root}: {exc}; rename the folder") from None
    return dirs


def folder_files(root: str | Path) -> tuple[list[ImageFile], list[str]]:
    """The image files of a class-per-subfolder tree and the class names (sorted, as ImageFolder).

    Hidden entries and files with other suffixes are skipped; every class needs at least one
    image. Raises :class:`DatasetError` for a missing folder, too many files or classes, an
    oversized file, a class name that is not printable text, or test classes absent from train.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist or is not a folder (looked from "
                           f"{Path.cwd()}); pass the folder that holds one subfolder per class")
    top = _class_dirs(root)
    names = {d.name for d in top}
    if names == {"train", "test"}:
        splits = {s: _class_dirs(root / s) for s in ("train", "test")}
        classes = [d.name for d in splits["train"]]
        extra = sorted({d.name for d in splits["test"]} - set(classes))
        if extra:
            raise DatasetError(f"{root / 'test'} has classes {extra[:5]} that {root / 'train'} has not; "
                               "both splits need the same class folders")
    else:
        splits, classes = {"all": top}, [d.name for d in top]
    if not classes:
        raise DatasetError(f"{root} has no class folders; put each class's images in root/<class>/")
    ids = {c: i for i, c in enumerate(classes)}
    files: list[ImageFile] = []
    for split, dirs in splits.items():
        for d in dirs:
            found = _images_in(d, ids[d.name], split, limit=MAX_IMAGE_FILES - len(files))
            if not found and split != "test":
                raise DatasetError(f"class folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                                   "remove it or add images")
            files.extend(found)
    return files, classes


def _images_in(d: Path, label: int, split: str, limit: int) -> list[ImageFile]:
    out = []
    with os.scandir(d) as entries:
        for e in sorted(entries, key=lambda e: e.name):
            if e.name.startswith(".") or not e.is_file() or Path(e.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if len(out) >= limit:
                raise DatasetError(f"{d.parent} holds more than {MAX_IMAGE_FILES:,} images; use a subset")
            out.append(ImageFile(Path(e.path), label, split))
    return out


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise DatasetError("reading images needs Pillow: pip install pillow") from None
    return Image


def _decode(data: bytes, where: str, mode: str | None, size: tuple[int, int] | None):
    """``(H, W, C)`` uint8/float pixels of one encoded image, bounded before decoding."""
    Image = _pil()
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise DatasetError(f"{where} is {len(data):,} bytes, larger than the {MAX_IMAGE_FILE_BYTES:,} bytes an image "
                           "may take; shrink it or leave it out")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DatasetError(f"{where} is {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS:,} an image may have "
                                   "(a decompression bomb, or a photo far larger than a model's input); resize it")
            img.load()
            if mode is None:
                mode = "L" if img.mode in _GRAY_MODES else "RGB"
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(img)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files; name the file
        raise DatasetError(f"{where} is not a readable image ({type(exc).__name__}: {short_repr(str(exc), 120)}); "
                           "replace or remove it") from None
    return pixels if pixels.ndim == 3 else pixels[:, :, None]


def _image_mode(channels: str, probe) -> str | None:
    return {"rgb": "RGB", "gray": "L"}.get(channels) or probe()


def _folder_mode(files: list[ImageFile]) -> str:
    """'L' when every image is grayscale (read from the headers), else 'RGB'."""
    Image = _pil()
    for f in files:
        try:
            with Image.open(f.path) as img:
                if img.mode not in _GRAY_MODES:
                    return "RGB"
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{f.path} is not a readable image ({type(exc).__name__}: "
                               f"{short_repr(str(exc), 120)}); replace or remove it") from None
    return "L"


def _stack(images: list[np.ndarray], where: list[str], limit: int) -> np.ndarray:
    """``(N, C, H, W)`` float32 in [0, 1]; every image must have the first one's shape."""
    shape = images[0].shape
    for img, w in zip(images, where):
        if img.shape != shape:
            raise DatasetError(f"{w} is {img.shape[1]}x{img.shape[0]} with {img.shape[2]} channels but {where[0]} "
                               f"is {shape[1]}x{shape[0]} with {shape[2]}; give every image one size, or set the "
                               "option size='HxW' to resize them")
    total = len(images) * int(np.prod(shape)) * 4
    if total > limit:
        raise DatasetError(f"{len(images):,} images of {shape[1]}x{shape[0]}x{shape[2]} take {total:,} bytes as "
                           f"float32, more than the {limit:,} bytes a data set may take; use a subset, "
                           f"a smaller size, or raise ${MAX_DATA_BYTES_ENV} on the server")
    x = np.stack(images).transpose(0, 3, 1, 2)  # (N, C, H, W)
    scale = 255.0 if x.dtype == np.uint8 else 65535.0 if x.dtype == np.uint16 else 1.0
    return (x.astype(np.float32) / np.float32(scale)).astype(np.float32)


def load_imagefolder(spec: DatasetSpec, *, channels: str = "auto", size: str = "",
                     normalize: bool = True) -> SourceData:
    """Images in ``spec.path/<class>/`` (or ``train/`` and ``test/`` of them), one class per folder.

    Options: ``channels`` ("auto": grayscale when every image is, else RGB; "rgb"; "gray"),
    ``size`` ("HxW" resizes every image; by default all must share one size) and
    ``normalize`` (per-channel mean/std of the training split).
    """
    target = _check_options("imagefolder", "nchw", channels, size)
    if spec.path is None:
        raise DatasetError("dataset 'imagefolder' reads a folder: set path, e.g. "
                           "DatasetSpec(name='imagefolder', path='data/images')")
    files, classes = folder_files(spec.path)
    limit = max_data_bytes()
    on_disk = sum(f.path.stat().st_size for f in files)
    if on_disk > limit:
        raise DatasetError(f"{spec.path} holds {on_disk:,} bytes of images, more than the {limit:,} bytes a data set "
                           f"may take; use a subset, or raise ${MAX_DATA_BYTES_ENV} on the server")
    mode = _image_mode(channels, lambda: _folder_mode(files))
    images = [_decode(_read(f.path), str(f.path), mode, target) for f in files]
    x = _stack(images, [str(f.path) for f in files], limit)
    y = np.array([f.label for f in files], dtype=np.int64)
    split = np.array([f.split for f in files])
    common = dict(task="classification", class_names=classes, channel_norm=normalize)
    if (split == "all").all():
        return SourceData(x=x, y=y, **common)
    train, test = split == "train", split == "test"
    if not test.any():
        raise DatasetError(f"{Path(spec.path) / 'test'} holds no images; add some, or drop the train/test folders")
    return SourceData(x=x[train], y=y[train], x_test=x[test], y_test=y[test], **common)


def _read(path: Path) -> bytes:
    check_file_size(path, MAX_IMAGE_FILE_BYTES, "image", error=DatasetError, fix="shrink it or leave it out")
    return path.read_bytes()


def load_images(spec: DatasetSpec, *, layout: str = "nchw", channels: str = "auto", size: str = "",
                image_column: str = "image", shape: str = "", normalize: bool = True) -> SourceData:
    """Arrays of images from ``spec.path``: an NPZ (``layout`` says ``nchw`` or ``nhwc``) or a
    Parquet table whose ``image_column`` holds encoded images (PNG/JPEG bytes) or pixel arrays
    (nested lists in ``layout``, or flat lists with ``shape``, e.g. "3x32x32" for nchw), with
    labels in ``spec.label`` (default ``"label"``)."""
    target = _check_options("images", layout, channels, size)
    if spec.path is None:
        raise DatasetError("dataset 'images' reads an NPZ or Parquet file: set path, e.g. "
                           "DatasetSpec(name='images', path='cifar.npz', options={'layout': 'nhwc'})")
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise DatasetError(f"file {str(path)!r} does not exist (looked from {Path.cwd()}); check the path")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if size or channels != "auto":
            raise DatasetError(f"{path}: the options size and channels apply to encoded images (Parquet, folders); "
                               "an NPZ's arrays are used as they are")
        return _npz_images(spec, path, layout, normalize)
    if suffix == ".parquet":
        return _parquet_images(spec, path, channels, target, image_column, normalize, layout, shape)
    raise DatasetError(f"{path}: dataset 'images' reads .npz or .parquet files; got {suffix or 'no suffix'!r}. "
                       "For a folder of image files use name='imagefolder'")


def _npz_images(spec: DatasetSpec, path: Path, layout: str, normalize: bool) -> SourceData:
    from engine.data.files import load_npz

    headers = npz_headers(path)
    for key in ("x", "x_train", "x_test"):
        if key in headers and len(headers[key][0]) not in (3, 4):
            raise DatasetError(f"{path}: '{key}' has shape {headers[key][0]}; images need (N, C, H, W) with "
                               "layout='nchw', (N, H, W, C) with layout='nhwc', or (N, H, W)")
    scale = {k: 255.0 if headers[k][1] == np.uint8 else 1.0 for k in ("x", "x_train", "x_test") if k in headers}
    source = load_npz(spec)  # every file check of engine.data.files, the arrays as float32

    def images(a: np.ndarray | None, key: str) -> np.ndarray | None:
        if a is None:
            return None
        a = a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2) if layout == "nhwc" else a
        if a.shape[1] > 4:
            other = "nchw" if layout == "nhwc" else "nhwc"
            raise DatasetError(f"{path}: '{key}' read as layout={layout!r} has {a.shape[1]} channels (shape "
                               f"{tuple(a.shape)} as N, C, H, W); is it layout={other!r}?")
        return np.ascontiguousarray(a / np.float32(scale[key]), dtype=np.float32)

    x_key = "x" if "x" in headers and "x_train" not in headers else "x_train"
    if source.task != "classification":
        raise DatasetError(f"{path}: image labels must be integers or strings (class ids); got float targets")
    return SourceData(x=images(source.x, x_key), y=source.y, x_test=images(source.x_test, "x_test"),
                      y_test=source.y_test, task="classification", class_names=source.class_names,
                      channel_norm=normalize)


def _parquet_images(spec: DatasetSpec, path: Path, channels: str, target, image_column: str,
                    normalize: bool, layout: str = "nchw", shape: str = "") -> SourceData:
    import pyarrow.parquet as pq

    limit = max_data_bytes()
    check_data_file_size(path, limit)
    label = spec.label or "label"
    try:
        meta = pq.read_metadata(path)
        names = list(pq.read_schema(path).names)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path} could not be read as Parquet: {exc}") from None
    missing = [c for c in (image_column, label) if c not in names]
    if missing:
        raise DatasetError(f"{path} has no column {missing[0]!r} (columns are {names}); set the option "
                           "image_column and the dataset's label to the columns of images and labels")
    if meta.num_rows > MAX_IMAGE_FILES:
        raise DatasetError(f"{path} holds {meta.num_rows:,} images; at most {MAX_IMAGE_FILES:,} are read")
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if unpacked > limit:
        raise DatasetError(f"{path} holds {unpacked:,} bytes once decompressed, more than the {limit:,} bytes a data "
                           f"file may hold; use a subset, or raise ${MAX_DATA_BYTES_ENV} on the server")
    table = pq.read_table(path, columns=[image_column, label])
    y, _, class_names, task = encode_labels(table.column(label).to_numpy(zero_copy_only=False))
    if task != "classification":
        raise DatasetError(f"{path}: image labels in {label!r} must be integers or strings (class ids); got floats")
    column = table.column(image_column).combine_chunks()
    if _is_list(column.type):
        if target is not None or channels != "auto":
            raise DatasetError(f"{path}: the options size and channels apply to encoded images; pixel arrays in "
                               f"{image_column!r} are used as they are")
        x = _pixel_arrays(path, column, image_column, layout, shape, limit)
        return SourceData(x=x, y=y, task="classification", class_names=class_names, channel_norm=normalize)
    cells = column.to_pylist()
    raw = [c.get("bytes") if isinstance(c, dict) else c for c in cells]
    bad = next((i for i, b in enumerate(raw) if not isinstance(b, bytes | bytearray)), None)
    if bad is not None:
        raise DatasetError(f"{path}: row {bad} of column {image_column!r} holds {type(raw[bad]).__name__}, not "
                           "encoded image bytes (PNG/JPEG, or a struct with 'bytes')")
    mode = _image_mode(channels, lambda: _bytes_mode(raw, path))
    where = [f"{path} row {i} ({image_column!r})" for i in range(len(raw))]
    images = [_decode(bytes(b), w, mode, target) for b, w in zip(raw, where)]
    if not images:
        raise DatasetError(f"{path} holds no rows")
    x = _stack(images, where, limit)
    return SourceData(x=x, y=y, task="classification", class_names=class_names, channel_norm=normalize)


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _pixel_arrays(path: Path, column, name: str, layout: str, shape: str, limit: int) -> np.ndarray:
    """``(N, C, H, W)`` float32 from a column of (nested) pixel lists, every row of one shape."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, dims, values = len(column), [], column
    while _is_list(values.type):
        lengths = pc.list_value_length(values)
        if lengths.null_count or pc.min_max(lengths)["min"] != pc.min_max(lengths)["max"]:
            raise DatasetError(f"{path}: the pixel lists in {name!r} differ in length (or some are empty); every "
                               "image needs the same shape")
        dims.append(int(pc.min_max(lengths)["min"].as_py() or 0))
        values = values.flatten()
    if values.null_count or not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise DatasetError(f"{path}: {name!r} holds {values.type} pixels, {values.null_count} of them null; pixels "
                           "must be numbers")
    if n * int(np.prod(dims)) * 4 > limit:
        raise DatasetError(f"{path}: {n:,} images of {dims} pixels take more than the {limit:,} bytes a data set may "
                           f"take as float32; use a subset, or raise ${MAX_DATA_BYTES_ENV} on the server")
    pixels = values.to_numpy(zero_copy_only=False)
    if len(dims) == 1:
        if not shape:
            raise DatasetError(f"{path}: {name!r} holds flat pixel lists of {dims[0]}; set the option shape, e.g. "
                               "'3x32x32' with layout='nchw' or '32x32x3' with layout='nhwc'")
        try:
            dims = [int(v) for v in shape.lower().split("x")]
        except ValueError:
            dims = []
        if len(dims) not in (2, 3) or int(np.prod(dims)) != len(pixels) // max(n, 1):
            raise DatasetError(f"{path}: option shape={shape!r} does not hold the {len(pixels) // max(n, 1)} pixels "
                               f"of each row of {name!r}; give 'CxHxW' (nchw), 'HxWxC' (nhwc) or 'HxW'")
    x = pixels.reshape(n, *dims)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2) if layout == "nhwc" else x
    if x.ndim != 4 or x.shape[1] > 4:
        other = "nchw" if layout == "nhwc" else "nhwc"
        raise DatasetError(f"{path}: {name!r} read as layout={layout!r} gives images of shape {tuple(x.shape[1:])} "
                           f"(C, H, W); is it layout={other!r}?")
    return np.ascontiguousarray(x / np.float32(scale), dtype=np.float32)


def _bytes_mode(raw: list, path: Path) -> str:
    Image = _pil()
    for i, b in enumerate(raw):
        try:
            with Image.open(io.BytesIO(bytes(b))) as img:
                if img.mode not in _GRAY_MODES:
                    return "RGB"
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{path} row {i} is not a readable image ({type(exc).__name__}); "
                               "replace or remove it") from None
    return "L"


def content_sha256(root: str | Path, kind: str) -> tuple[str, int, int]:
    """``(sha256, n_files, bytes)`` of what a data set reads: every image of a folder (relative
    path and contents, in sorted order) or the one file; a changed, added or removed file changes it."""
    h = hashlib.sha256()
    if kind == "imagefolder":
        files, _ = folder_files(root)
        paths = [f.path for f in files]
        base = Path(root).expanduser()
    else:
        paths = [Path(root).expanduser()]
        base = paths[0].parent
    total = 0
    for p in paths:
        h.update(str(p.relative_to(base)).encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
                total += len(block)
        h.update(b"\0")
    return h.hexdigest(), len(paths), total
