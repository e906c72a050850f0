"""Static export through kaleido with the system Chromium (never a downloaded browser)."""

from __future__ import annotations

import argparse
import struct

import numpy as np
import plotly.graph_objects as go
import pytest
from report_helpers import CHROMIUM, zoo_figures

import store
from engine.figures.export import StaticExportError, chromium_path, to_images
from engine.report import DraftBook, add_report_arguments, figure_item, report_command

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"STATIC EXPORT TESTS SKIPPED: no Chromium at {CHROMIUM}; install Debian's package "
           "(`make browser-deps`). Zooscope never downloads a browser.")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return struct.unpack(">II", data[16:24])


@needs_chromium
def test_png_has_the_requested_size_times_the_scale(monkeypatch):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    assert chromium_path() == str(CHROMIUM)
    x = np.linspace(0, 6, 50)
    figs = [go.Figure(go.Scatter(x=x, y=np.sin(x))), go.Figure(go.Heatmap(z=np.outer(x, x)))]
    images = to_images(figs, "png", width=400, height=300, scale=2)
    assert [_png_size(im) for im in images] == [(800, 600), (800, 600)]


@needs_chromium
def test_cli_writes_every_figure_as_svg_beside_the_report(small_store_path, tmp_path, capsys):
    path, ids = small_store_path
    with store.open_store(path) as st:
        figs = zoo_figures(st, ids["zoo_id"])[:2]
        for k, fig in enumerate(figs):
            DraftBook(st).pin("d", figure_item(fig, title=f"Figure {k}: curves/phase", params={"k": k}))
    parser = add_report_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--from-draft", "d", "--out", str(tmp_path / "r.html"), "--images",
                              str(tmp_path / "img"), "--image-format", "svg"])
    assert report_command(args, path) == 0
    files = sorted((tmp_path / "img").iterdir())
    assert [f.name for f in files] == ["01-figure-0-curves-phase.svg", "02-figure-1-curves-phase.svg"]
    for f, fig in zip(files, figs):
        head = f.read_text()[:300]  # the figure's own height, the default width
        assert head.startswith("<svg") and 'width="700"' in head and f'height="{fig.layout.height}"' in head
    assert "2 SVG images" in capsys.readouterr().out


def test_a_missing_browser_is_named_and_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium"))
    assert chromium_path() is None
    with pytest.raises(StaticExportError, match=r"BROWSER_PATH='.*no-chromium' does not exist.*never downloads"):
        to_images([go.Figure()], "png")


def test_unknown_formats_are_refused():
    with pytest.raises(ValueError, match=r"image format must be one of \('png', 'svg'"):
        to_images([go.Figure()], "eps")
