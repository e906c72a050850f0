"""Static images of figures (PNG, SVG, PDF) through kaleido and the system's Chromium.

Kaleido (v1) drives a Chrome/Chromium it finds; Zooscope points it at the one the
system has (``$BROWSER_PATH``, else ``/usr/bin/chromium`` and the usual names on
``PATH``) and never downloads one (``kaleido.get_chrome`` is not called). MathJax is
off, so rendering needs no network either.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "StaticExportError", "chromium_path", "to_image", "to_images", "write_image"]

FORMATS = ("png", "svg", "pdf", "jpeg", "webp")
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class StaticExportError(RuntimeError):
    """No browser to render with, or kaleido missing or too old."""


def chromium_path() -> str | None:
    """The browser kaleido will use: ``$BROWSER_PATH`` if it exists, else the first system Chromium found."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if Path(env).is_file() else None
    for name in _CANDIDATES:
        found = name if Path(name).is_file() else shutil.which(name)
        if found:
            return found
    return None


def _check(fmt: str) -> tuple[Any, str]:
    if fmt not in FORMATS:
        raise ValueError(f"image format must be one of {FORMATS}; got {fmt!r}")
    try:
        import kaleido
    except ImportError as exc:
        raise StaticExportError(f"static export needs kaleido>=1 ({exc}); pip install 'zooscope[export]'") from None
    if not hasattr(kaleido, "Kaleido"):
        raise StaticExportError(f"static export needs kaleido>=1 (the Chrome-based one); found "
                                f"{getattr(kaleido, '__version__', 'an older version')}: pip install -U kaleido")
    browser = chromium_path()
    if browser is None:
        where = f"BROWSER_PATH={os.environ['BROWSER_PATH']!r} does not exist" if os.environ.get("BROWSER_PATH") \
            else f"none of {list(_CANDIDATES)} was found"
        raise StaticExportError(f"static export needs a Chromium and {where}. Install the system package "
                                "(Debian: apt-get install chromium, or `make browser-deps`) or set BROWSER_PATH; "
                                "Zooscope never downloads a browser")
    return kaleido, browser


def _as_dict(fig: Any) -> dict[str, Any]:
    import json

    import plotly.io as pio

    return json.loads(pio.to_json(fig, validate=False))


def to_images(figs: Sequence[Any], fmt: str = "png", *, width: int | None = None, height: int | None = None,
              scale: float = 1.0, timeout_s: float = 90.0) -> list[bytes]:
    """Render several figures with one browser; returns the file contents in order.

    Parameters
    ----------
    figs : sequence of plotly Figure or figure dict
    fmt : {"png", "svg", "pdf", "jpeg", "webp"}
    width, height : int, optional
        Size in layout pixels; default: the figure's own layout size, else 700 × 500.
    scale : float
        Pixel density: a PNG is ``width * scale`` by ``height * scale`` pixels.

    Raises
    ------
    StaticExportError
        If kaleido (v1) or a system Chromium is missing.
    """
    kaleido, browser = _check(fmt)
    specs = []
    for fig in figs:
        d = _as_dict(fig)
        layout = d.get("layout", {})
        specs.append((d, {"format": fmt, "scale": scale, "width": int(width or layout.get("width") or 700),
                          "height": int(height or layout.get("height") or 500)}))

    async def render() -> list[bytes]:
        async with kaleido.Kaleido(n=1, mathjax=False, path=browser, timeout=timeout_s) as k:
            return [await k.calc_fig(d, opts=opts) for d, opts in specs]

    # asyncio.run in a thread of its own: callers may already be inside an event loop (notebooks).
    with ThreadPoolExecutor(max_workers=1) as pool:
        out = pool.submit(asyncio.run, render()).result()
    return [o.encode() if isinstance(o, str) else bytes(o) for o in out]


def to_image(fig: Any, fmt: str = "png", *, width: int | None = None, height: int | None = None,
             scale: float = 1.0) -> bytes:
    """One figure as PNG/SVG/PDF bytes; see :func:`to_images`."""
    return to_images([fig], fmt, width=width, height=height, scale=scale)[0]


def write_image(fig: Any, path: str | os.PathLike[str], *, fmt: str | None = None, width: int | None = None,
                height: int | None = None, scale: float = 1.0) -> Path:
    """Write one figure to ``path``; the format defaults to the file's suffix."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower().replace("jpg", "jpeg")
    data = to_image(fig, fmt, width=width, height=height, scale=scale)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
