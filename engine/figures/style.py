"""Shared look: one colour per run (stable across pages), a clean template, safe hover text."""

from __future__ import annotations

import hashlib
import html

import plotly.graph_objects as go

__all__ = ["PALETTE", "TEMPLATE", "color_for", "escape", "finish"]

# Okabe–Ito plus a few extras: distinguishable for colour-blind readers.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#8C564B", "#7F7F7F", "#17BECF", "#BCBD22"]
TEMPLATE = "plotly_white"


def color_for(key: object, order: list | None = None) -> str:
    """A stable colour: by position in ``order`` when given, else by a hash of ``key``."""
    if order is not None and key in order:
        return PALETTE[order.index(key) % len(PALETTE)]
    digest = hashlib.md5(str(key).encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def escape(text: object) -> str:
    """User text (run, zoo, layer, feature names, hyperparameter values) as inert text in a Plotly figure.

    Plotly draws titles, axis and tick labels, legend entries, annotations and hover text from
    a subset of HTML (``<a href>``, ``<b>``, ``<span style>``, ``<br>``, entities), and fills
    ``%{…}`` in hover templates. ``<``, ``>`` and ``&`` become entities, which Plotly shows as
    the characters themselves, and the ``{`` of a ``%{`` becomes ``&#123;``, so a name can neither
    add markup nor pull a value into a hover template. Every figure passes user text through
    this one function.
    """
    return html.escape(str(text), quote=False).replace("%{", "%&#123;")


def finish(fig: go.Figure, *, title: str | None = None, height: int = 420) -> go.Figure:
    fig.update_layout(template=TEMPLATE, height=height, margin=dict(l=60, r=20, t=50 if title else 20, b=50),
                      title=escape(title) if title else None, legend=dict(itemsizing="constant"))
    return fig
