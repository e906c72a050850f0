"""Limits on what a user or a file may send, and safe ways to echo what they sent.

Every number a spec accepts is bounded by what the code below can use, and every
limit is a named constant here, so a form, a sweep file, the CLI and the docs all
state the same value. Names are short, printable text; a bad value is echoed in an
error as a short, truncated ``repr`` so that an error about a huge value stays small.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_CHECKPOINTS",
    "MAX_DEPTH",
    "MAX_EVAL_SIZE",
    "MAX_HPARAMS",
    "MAX_IMPORT_METRICS_BYTES",
    "MAX_IMPORT_METRIC_VALUES",
    "MAX_IMPORT_SIDE_FILE_BYTES",
    "MAX_IMPORT_WEIGHTS_BYTES",
    "MAX_MODEL_MODULES",
    "MAX_MODEL_PARAMETERS",
    "MAX_NAME_LENGTH",
    "MAX_OPTION_TEXT",
    "MAX_REPR",
    "MAX_RUNS",
    "MAX_STEPS",
    "MAX_SWEEP_FILE_BYTES",
    "MAX_TITLE_LENGTH",
    "MAX_WIDTH",
    "SEED_MAX",
    "check_file_size",
    "check_name",
    "printable",
    "short_repr",
]

# Seeds: NumPy's legacy seeding (the MNIST-1D generator, scikit-learn's random_state) takes
# 0..2**32-1, the narrowest of the consumers (torch.Generator takes 64 bits, the catalog's
# BIGINT 63), so every seed in a spec is bounded by it.
SEED_MAX = 2**32 - 1
MAX_WIDTH = 8192  # hidden units / channels: an 8192x8192 layer is 67M parameters (268 MB)
MAX_DEPTH = 64  # hidden layers / blocks
# Parameters and buffers of a model built from the user's code (a factory), counted on the meta
# device before it is built: 2**30 float32 values are 4 GiB, MAX_IMPORT_WEIGHTS_BYTES' worth
# (a ResNet-18 has 11.2 M, a ViT-L 304 M).
MAX_MODEL_PARAMETERS = 1 << 30
# Submodules a factory may register while it builds (a ResNet-152 has ~500, GPT-2 XL ~600): each is a
# Python object of ~2 KB, so 10**7 tiny layers are tens of GB before a single parameter counts.
MAX_MODEL_MODULES = 100_000
MAX_BATCH_SIZE = 65_536
MAX_STEPS = 10_000_000  # optimiser steps of one run
MAX_EVAL_SIZE = 1_000_000  # samples per split for checkpoint metrics
MAX_CHECKPOINTS = 1_000  # checkpoints of one run (N of 'linear:N' / 'log:N', or listed steps)
MAX_RUNS = 10_000  # runs of one sweep
MAX_NAME_LENGTH = 100  # zoo, run and report-draft names
MAX_TITLE_LENGTH = 200  # report titles
MAX_OPTION_TEXT = 1_000  # a text value in a dataset's / architecture's options, or a file path
MAX_SWEEP_FILE_BYTES = 1 << 20  # a TOML/YAML sweep file (1 MiB; the demo sweep is 1 KB)
MAX_REPR = 80  # characters of a bad value echoed in an error
# Importing what already exists (zooscope import-run / import-zoo): per file, and per metrics file.
MAX_IMPORT_WEIGHTS_BYTES = 4 << 30  # one checkpoint file (4 GiB; a ResNet-18 is 45 MB, a ViT-L 1.2 GB)
MAX_IMPORT_SIDE_FILE_BYTES = 1 << 20  # a manifest.json or a trial's params.json (1 MiB)
MAX_HPARAMS = 256  # hyperparameter columns of one imported run or trial (the published model zoos have about 30)
MAX_IMPORT_METRICS_BYTES = 64 << 20  # a metrics CSV / JSON-lines file or a trial's result.json (64 MiB)
MAX_IMPORT_METRIC_VALUES = 2_000_000  # metric values of one imported run (each one a catalog row)


def short_repr(value: Any, limit: int = MAX_REPR) -> str:
    """``repr(value)`` in at most ``limit`` characters (cut with an ellipsis).

    Strings and containers are cut before they are printed (``reprlib``), so a huge or
    deeply shared value (a YAML alias bomb) costs no more than ``limit`` characters to show.
    """
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int past Python's 4300-digit limit on int -> str
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _make_repr():
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, 2 * MAX_REPR, 2 * MAX_REPR, 2 * MAX_REPR
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = 12
    return r


_REPR = _make_repr()


def _unsafe_characters(text: str) -> list[str]:
    """Control, format, surrogate, private-use and unassigned characters, and line/paragraph separators."""
    return [c for c in text if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")]


def check_name(value: Any, what: str = "name", max_length: int = MAX_NAME_LENGTH) -> str:
    """``value`` stripped, if it is a usable name; else ``ValueError`` saying why.

    A name is non-blank text of at most ``max_length`` characters with no control or
    format characters (NUL, ESC, newlines, bidirectional overrides such as U+202E):
    names are shown in terminals, tables and pages, where such characters would
    rewrite what is shown around them.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text; got {short_repr(value)}")
    name = value.strip()
    if not name:
        raise ValueError(f"{what} must not be blank; got {short_repr(value)}")
    if len(name) > max_length:
        raise ValueError(f"{what} has {len(name)} characters; at most {max_length} are allowed "
                         f"(got {short_repr(name)})")
    bad = _unsafe_characters(name)
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(bad))
        raise ValueError(f"{what} contains control or format characters ({shown}), which are not allowed; "
                         f"use printable text (got {short_repr(name)})")
    return name


def check_file_size(path: str | Path, limit: int, what: str, *, fix: str = "",
                    error: type[ValueError] = ValueError) -> int:
    """The size in bytes of the file at ``path``, checked before anything reads it.

    Parameters
    ----------
    path : str or Path
        The file.
    limit : int
        The most bytes it may have.
    what : str
        What the file is ("metrics file", "manifest", "image"), the start of the messages.
    fix : str
        How to get under the limit, appended to the message.
    error : type
        ``ValueError`` or a subclass of it (``DatasetError`` for data files).

    Raises
    ------
    ValueError
        (``error``) ``"{what} {path} does not exist"`` when there is no file at ``path``, and
        ``"{what} {path} has {size} bytes; at most {limit} are read; {fix}"`` when it is larger.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    size = path.stat().st_size
    if size > limit:
        raise error(f"{what} {path} has {size:,} bytes; at most {limit:,} are read" + (f"; {fix}" if fix else ""))
    return size


def printable(text: Any, limit: int = 2 * MAX_NAME_LENGTH) -> str:
    """``text`` safe to print on a terminal: non-printable characters escaped, cut to ``limit``.

    For values already in a store (written before names were checked): ``"a\\x1b[2J"``
    prints as ``a\\x1b[2J`` literally rather than clearing the screen.
    """
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
