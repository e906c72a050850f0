"""AppTest: names, messages and notes written like Markdown reach the pages as escaped text.

A zoo, a run, a job's owner and a job's error carry an image link (plus maths and a colour); the
report notes carry an image and a raw ``<img>``. Every element Streamlit renders as Markdown is
rendered here by markdown-it-py (CommonMark, images on): none may hold an image or a link to the
address, and the element's value is the escaped text. The notes preview is the export's HTML.
(The real-browser test in test_browser.py checks that no request reaches a listener.)
"""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1.element_tree import Element

import store
from engine.report import DraftBook
from pages.ui.text import WORD_JOINER, literal

HOST = "http://127.0.0.1:9"
IMG = f"![t]({HOST}/x.png)"
NAME = f"{IMG} $x^2$ :red[alarm] **b**"
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _markdown_sources(at) -> list[str]:
    """The Markdown source of every element Streamlit renders as Markdown (titles, captions, alerts,
    progress texts), in the main area and the sidebar."""
    out = []
    for root in (at.main, at.sidebar):
        for node in _walk(root):
            if isinstance(node, Element) and node.type != "html":  # st.html is HTML, checked on its own
                for field in ("body", "text"):
                    if field in node.proto.DESCRIPTOR.fields_by_name and getattr(node.proto, field):
                        out.append(getattr(node.proto, field))
    return out


def _assert_nothing_fetches_or_links(at) -> None:
    for source in _markdown_sources(at):
        rendered = MD.render(source)
        assert "<img" not in rendered and f'src="{HOST}' not in rendered, source
        assert f'href="{HOST}' not in rendered, source


@pytest.fixture
def named_store(trained_store):
    """The tiny zoo with its runs renamed like Markdown, a zoo named like Markdown, and jobs that carry it."""
    with store.open_store(trained_store) as st_:
        tiny = st_.get_zoo("tiny")["zoo_id"]
        for i, run_id in enumerate(st_.list_runs(tiny)["run_id"]):
            st_.update_run(run_id, name=f"{NAME} {i}")
        zoo_id = st_.create_zoo(NAME, {}, owner=NAME)
        st_.add_runs([{"zoo_id": zoo_id, "name": NAME, "status": "done", "hparams": {"opt": NAME, "seed": 0},
                       "owner": NAME}])
        failed = st_.submit_job("train", {}, owner=NAME, zoo_id=zoo_id)
        st_.update_job(failed, status="failed", error=f"sweep label {NAME} failed")
        st_.submit_job("probe", {"probe": "weights.norm"}, owner=NAME, zoo_id=zoo_id)
    return trained_store, {"tiny": tiny, "named": zoo_id}


def test_a_zoo_run_and_job_named_like_markdown_show_literally_on_the_zoo_page(app, named_store):
    path, zoos = named_store
    at = app(path, zoo=zoos["named"])
    assert not at.exception, at.exception
    assert at.title[0].value == f"Zoo · {literal(NAME)}"
    assert any(literal(f"sweep label {NAME} failed") in e.value for e in at.sidebar.error)
    assert any(literal(NAME) in c.value for c in at.sidebar.caption)  # the queued job's owner
    assert at.dataframe(key="runs_table").value["name"].tolist() == [NAME]  # a grid cell: plain text already
    _assert_nothing_fetches_or_links(at)


def test_a_run_named_like_markdown_shows_literally_on_the_instability_tab(app, named_store):
    path, zoos = named_store
    at = app(path, page="pages/connectivity.py", zoo=zoos["tiny"])
    assert not at.exception, at.exception
    forks = [c.value for c in at.caption if c.value.startswith("Forks run")]
    assert forks and literal(NAME) in forks[0], forks
    assert MD.renderInline(forks[0]).replace(WORD_JOINER, "").startswith(f"Forks run <strong>{NAME} ")
    _assert_nothing_fetches_or_links(at)


def test_report_notes_preview_is_markdown_without_images_or_raw_html(app, named_store, monkeypatch):
    path, _ = named_store
    monkeypatch.setenv("USER", "tester")
    with store.open_store(path) as st_:
        book = DraftBook(st_)
        draft = book.load("tester")
        notes = f"Findings **bold** and {IMG}\n\n<img src={HOST}/raw.png> [a link](https://example.org)"
        book.save(draft.model_copy(update={"notes": notes}), author="tester")
    at = app(path, page="pages/reports.py")
    assert not at.exception, at.exception
    previews = [e.proto.body for e in at.get("html")]
    assert len(previews) == 1, previews
    assert "<strong>bold</strong>" in previews[0]  # still Markdown
    assert "<img" not in previews[0].replace("&lt;img", "")  # the raw <img> is text, the image syntax is not an image
    assert f'src="{HOST}' not in previews[0] and f"src={HOST}" not in previews[0].replace(f"&lt;img src={HOST}", "")
    assert '<a href="https://example.org">a link</a>' in previews[0]
    _assert_nothing_fetches_or_links(at)
