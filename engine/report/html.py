"""A report as one self-contained HTML file: plotly.js once, every figure live, no network.

Everything a reader typed (titles, notes, run names, parameters) reaches the page only
through :func:`html.escape`, through Markdown with raw HTML turned off, or as JSON
inside a non-executed ``<script type="application/json">`` block with ``<``, ``>`` and
``&`` written as ``\\u003c`` etc. A Content-Security-Policy allows exactly the two
scripts this module writes (by hash), no network origin at all, and images only from
``data:``/``blob:`` URLs, so even a bug in escaping could neither run a script nor
fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from .model import Report, ReportItem
from .provenance import PACKAGES

__all__ = ["markdown_to_html", "render_html"]

_BOOT = """(function () {
  var config = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["sendDataToCloud"]};
  var divs = document.querySelectorAll("div.zs-figure");
  for (var i = 0; i < divs.length; i++) {
    (function (div) {
      try {
        var spec = JSON.parse(document.getElementById(div.getAttribute("data-source")).textContent);
        Plotly.newPlot(div, {data: spec.data || [], layout: spec.layout || {}, frames: spec.frames || [],
                             config: config}).catch(function (err) { fail(div, err); });
      } catch (err) { fail(div, err); }
    })(divs[i]);
  }
  function fail(div, err) {
    div.className += " zs-error";
    div.textContent = "This figure could not be drawn: " + err;
  }
})();"""

_CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --accent: #0072B2; --paper: #ffffff; --soft: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--ink);
       font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 60px; }
header.zs-head { border-bottom: 3px solid var(--accent); margin-bottom: 18px; }
header.zs-head h1 { margin: 0 0 6px; font-size: 30px; line-height: 1.2; overflow-wrap: anywhere; }
.zs-byline { color: var(--muted); margin: 0 0 14px; }
nav.zs-toc { background: var(--paper); border: 1px solid var(--line); border-radius: 8px; padding: 10px 18px;
             margin: 0 0 18px; }
nav.zs-toc ol { margin: 4px 0; padding-left: 22px; }
nav.zs-toc a { color: var(--accent); text-decoration: none; overflow-wrap: anywhere; }
section.zs-card { background: var(--paper); border: 1px solid var(--line); border-radius: 8px;
                  padding: 16px 20px; margin: 0 0 18px; break-inside: avoid; }
section.zs-card h2 { margin: 0 0 8px; font-size: 20px; overflow-wrap: anywhere; }
.zs-num { display: inline-block; min-width: 28px; color: var(--accent); }
.zs-note { margin: 0 0 8px; overflow-wrap: anywhere; }
.zs-note p { margin: 0 0 8px; }
.zs-figure { width: 100%; min-height: 200px; }
.zs-error { color: #a11; padding: 12px; border: 1px dashed #a11; }
details { margin: 8px 0 0; }
summary { cursor: pointer; color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; width: auto; max-width: 100%; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td code { word-break: break-all; }
th { background: var(--soft); font-weight: 600; }
td.zs-n { text-align: right; font-variant-numeric: tabular-nums; }
.zs-scroll { overflow-x: auto; }
code, pre { font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px;
      overflow-x: auto; max-height: 420px; }
.zs-ids { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
.zs-warn { background: #fff4e5; border: 1px solid #f0b46a; border-radius: 6px; padding: 8px 12px; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 24px; }
@media print { body { background: #fff; } nav.zs-toc, summary { display: none; } details { display: block; } }
"""


# -- pieces --------------------------------------------------------------------------------------------

def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    # CommonMark with raw HTML off: "<script>" in a note is text. Images are off too (a remote
    # image would be a network request); `![alt](url)` shows as "!" plus a link. Link targets
    # are checked by markdown-it (no javascript:, vbscript:, file:, data:).
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")
    return md


def markdown_to_html(text: str) -> str:
    """Markdown (CommonMark + tables) as HTML, with any raw HTML in ``text`` shown as text."""
    return _markdown().render(text or "")


def _json_script(value: Any, element_id: str) -> str:
    """``value`` as JSON in an inert script block that no text inside can close."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN/inf from a hand-made figure dict: JSON has no such numbers
        text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False)
    for raw, safe in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                      ("\u2029", "\\u2029")):
        text = text.replace(raw, safe)
    return f'<script type="application/json" id="{_e(element_id)}">{text}</script>'


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '<td class="zs-n">—</td>'
    if isinstance(value, bool):
        return f"<td>{value}</td>"
    if isinstance(value, int):
        return f'<td class="zs-n">{value}</td>'
    if isinstance(value, float):
        return f'<td class="zs-n">{value:.4g}</td>'
    if isinstance(value, (dict, list)):
        return f"<td><code>{_e(json.dumps(value, sort_keys=True, default=str))}</code></td>"
    return f"<td>{_e(value)}</td>"


def _table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f'<div class="zs-scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _records(records: list[dict[str, Any]], columns: list[str]) -> str:
    return _table(columns, ([r.get(c) for c in columns] for r in records))


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(key)}</th>{_cell(value)}</tr>" for key, value in pairs)
    return f'<div class="zs-scroll"><table class="zs-kv"><tbody>{body}</tbody></table></div>'


def _pre_json(label: str, value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return f"<details><summary>{_e(label)}</summary><pre>{_e(text)}</pre></details>"


@lru_cache(maxsize=1)
def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    # A literal "</script" would end the element early; "<\/" means the same inside JS strings.
    return get_plotlyjs().replace("</script", "<\\/script")


def _sha256(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


# -- sections --------------------------------------------------------------------------------------------

def _item(n: int, item: ReportItem, names: dict[str, str], steps: dict[str, Any]) -> tuple[str, str]:
    """One pinned item as a card, and the JSON block its figure is drawn from (or '')."""
    parts = [f'<section class="zs-card zs-item" id="item-{n}">',
             f'<h2><span class="zs-num">{n}</span> {_e(item.title)}</h2>']
    if item.note.strip():
        parts.append(f'<div class="zs-note">{markdown_to_html(item.note)}</div>')
    data = ""
    if item.figure is not None:
        parts.append(f'<div class="zs-figure" id="fig-{n}" data-source="fig-{n}-json"></div>')
        data = _json_script(item.figure, f"fig-{n}-json")
    else:
        table = item.table or {}
        parts.append(_table(table.get("columns", []), table.get("rows", [])))
    meta = []
    if item.params:
        meta.append(_kv(sorted(item.params.items())))
    if item.checkpoint_ids:
        def ref(c: str) -> str:
            where = f" ({_e(names.get(steps[c][0], steps[c][0]))}, step {_e(steps[c][1])})" if c in steps else ""
            return f"<code>{_e(c)}</code>{where}"

        refs = ", ".join(ref(c) for c in item.checkpoint_ids)
        meta.append(f'<p class="zs-ids">Checkpoints: {refs}</p>')
    if item.run_ids:
        refs = ", ".join(f"<code>{_e(r)}</code>" + (f" ({_e(names[r])})" if r in names else "") for r in item.run_ids)
        meta.append(f'<p class="zs-ids">Runs: {refs}</p>')
    if item.probe_keys:
        meta.append('<p class="zs-ids">Probe results: ' + ", ".join(f"<code>{_e(k)}</code>" for k in item.probe_keys)
                    + "</p>")
    pinned = " ".join(x for x in (f"from {_e(item.source)}" if item.source else "",
                                  f"by {_e(item.pinned_by)}" if item.pinned_by else "",
                                  f"at {_e(item.pinned_at)}" if item.pinned_at else "") if x)
    meta.append(f'<p class="zs-ids">Item <code>{_e(item.item_id)}</code>{" pinned " + pinned if pinned else ""}</p>')
    parts.append("<details><summary>Parameters and sources</summary>" + "".join(meta) + "</details></section>")
    return "".join(parts), data


def _provenance(report: Report) -> str:
    p = report.provenance
    env = p.get("environment", {})
    out = ['<section class="zs-card" id="provenance"><h2>Provenance</h2>']
    out.append(_kv([("Generated at (UTC)", p.get("generated_at", report.created_at)),
                    ("Author", p.get("author", report.author)),
                    ("Zooscope version", p.get("zooscope_version", env.get("zooscope"))),
                    ("Store", p.get("store")), ("Draft", report.draft),
                    ("Python", env.get("python")), ("Platform", env.get("platform"))]))
    missing = p.get("missing") or {}
    if missing:
        listed = "; ".join(f"{_e(kind)}: " + ", ".join(f"<code>{_e(i)}</code>" for i in ids)
                           for kind, ids in missing.items())
        out.append(f'<p class="zs-warn">No longer in the store when this report was made: {listed}</p>')
    if p.get("zoos"):
        out.append("<h3>Zoos</h3>" + _records(p["zoos"], ["zoo_id", "name", "owner", "created_at"]))
        out += [_pre_json(f"Sweep of zoo {z.get('name')} ({z.get('zoo_id')})", z.get("sweep")) for z in p["zoos"]]
    if p.get("runs"):
        out.append("<h3>Runs</h3>" + _records(p["runs"], ["run_id", "name", "zoo_id", "seed", "status", "device",
                                                          "owner", "hparams", "wall_s"]))
        out += [_pre_json(f"Configuration of run {r.get('name')} ({r.get('run_id')})", r.get("config"))
                for r in p["runs"]]
    if p.get("checkpoints"):
        out.append("<h3>Checkpoints</h3>" + _records(p["checkpoints"], [
            "checkpoint_id", "run_id", "step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc",
            "artifact_sha"]))
    if p.get("probes"):
        out.append("<h3>Probe results</h3>" + _records(p["probes"], ["key", "kind", "code_version", "owner",
                                                                      "created_at"]))
        out += [_pre_json(f"Parameters and inputs of probe {q.get('kind')} ({str(q.get('key'))[:12]})",
                          {"params": q.get("params"), "inputs": q.get("inputs")}) for q in p["probes"]]
    packages = env.get("packages", {})
    order = [*PACKAGES, *sorted(set(packages) - set(PACKAGES))]
    out.append("<h3>Software</h3>" + _table(["package", "version"],
                                            [(k, packages[k] or "not installed") for k in order if k in packages]))
    out.append("</section>")
    return "".join(out)


def render_html(report: Report) -> str:
    """The report as one HTML document (str) that needs nothing but a browser.

    plotly.js is embedded once, in the head; each figure is a JSON block drawn by one
    small script at the end. The output depends on ``report`` only (no clock, no
    store), so rendering a stored report again gives the same bytes.
    """
    p = report.provenance
    names = {r["run_id"]: r.get("name") or r["run_id"] for r in p.get("runs", [])}
    steps = {c["checkpoint_id"]: (c.get("run_id"), c.get("step")) for c in p.get("checkpoints", [])}
    rendered = [_item(n, item, names, steps) for n, item in enumerate(report.items, 1)]
    cards, blocks = [c for c, _ in rendered], [b for _, b in rendered]
    toc = "".join(f'<li><a href="#item-{n}">{_e(item.title)}</a></li>' for n, item in enumerate(report.items, 1))
    plotlyjs = _plotlyjs()
    csp = ("default-src 'none'; script-src " + f"'{_sha256(plotlyjs)}' '{_sha256(_BOOT)}' 'unsafe-eval'; "
           "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; worker-src blob:; "
           "base-uri 'none'; form-action 'none'")
    byline = " · ".join(x for x in (f"by {_e(report.author)}" if report.author else "", _e(report.created_at),
                                    f"{len(report.figures)} figure{'s' * (len(report.figures) != 1)}") if x)
    version = _e(p.get("zooscope_version", ""))
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="Zooscope {version}">',
        f"<title>{_e(report.title)}</title><style>{_CSS}</style>",
        f"<script>{plotlyjs}</script></head><body><main>",
        f'<header class="zs-head"><h1>{_e(report.title)}</h1><p class="zs-byline">{byline}</p></header>',
        f'<nav class="zs-toc"><strong>Contents</strong><ol>{toc}'
        '<li><a href="#provenance">Provenance</a></li></ol></nav>',
        f'<section class="zs-card zs-notes">{markdown_to_html(report.notes)}</section>' if report.notes.strip() else "",
        *cards,
        _provenance(report),
        f"<footer>Made with Zooscope {version}. This file is self-contained: it opens offline and "
        "requests nothing from the network.</footer></main>",
        *blocks,
        f"<script>{_BOOT}</script></body></html>\n",
    ])
