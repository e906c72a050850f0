"""pages.ui.text.literal: user text through Markdown comes out as the same text, with nothing that
loads, links, runs or restyles.

The rendering is CommonMark by markdown-it-py with raw HTML *on* (harsher than Streamlit, which
turns it off), tables and strikethrough (GFM, as Streamlit), three inline rules standing in for
Streamlit's additions -- ``$…$`` maths (KaTeX), ``:name[…]`` directives (colours) and
``:shortcode:`` emoji, which like Streamlit's own only fire on unescaped characters -- and GFM's
bare-URL and e-mail links, which fire on the parsed text, escapes or not.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from pages.ui.text import WORD_JOINER, literal

ATTACKS = [  # each of these turns into markup when rendered unescaped
    "![t](http://127.0.0.1:9/x.png)",
    "![t][ref]\n\n[ref]: http://127.0.0.1:9/ref.png",
    "<img src=http://127.0.0.1:9/x.png onerror=alert(1)>",
    "<script>alert(1)</script>",
    "<http://127.0.0.1:9/autolink>",
    "http://127.0.0.1:9/bare",
    "see www.example.com/x.png",
    "HTTPS://EXAMPLE.COM/X",
    "mail me: a.b+c@example.com",
    "[click][1]\n\n[1]: http://127.0.0.1:9/",
    "$\\frac{1}{2}$ and $$x^2$$",
    ":red[alarm] :blue-background[calm] :rainbow[x]",
    ":material/home: :smile: :+1:",
    "**bold** __bold__ *it* _it_ ~~struck~~ `code` ``c`c``",
    "# heading",
    "Heading\n===",
    "- item\n+ item\n* item\n1. first\n2) second",
    "> quote",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "a\n\nb\n---",
    "```\nfenced\n```",
    "&amp; &lt;b&gt; &#60;i&#62; &copy;",
    "back\\slash \\*not em\\* \\",
    "trailing backslash\\\nnext",
    "***",
]
HOSTILE = ATTACKS + [  # and these must come out as themselves too
    "[click](javascript:alert(1))",
    "%{customdata} {braces} [brackets] (parens)",
    "lr=0.1 · seed 3 · Zoo «ü» ☃ 🐘",
    "[x]",
]


def _streamlit_like() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

    def rule(pattern: str, css: str):
        regex = re.compile(pattern)

        def apply(state, silent) -> bool:
            match = regex.match(state.src, state.pos)
            if match is None:
                return False
            if not silent:
                token = state.push("html_inline", "", 0)
                token.content = f'<span class="{css}">{match.group(0)}</span>'
            state.pos = match.end()
            return True

        return apply

    md.inline.ruler.push("math", rule(r"\$\$?[^$]+\$\$?", "katex"))
    md.inline.ruler.push("directive", rule(r":[a-z][a-z0-9-]*\[[^\]]*\]", "directive"))
    md.inline.ruler.push("emoji", rule(r":[\w+-][\w+/-]*:", "emoji"))
    md.core.ruler.after("text_join", "autolink_literal", _autolink_literal)
    return md


# Streamlit's remark-gfm links bare URLs and e-mail addresses after parsing, in the text itself
# (mdast-util-gfm-autolink-literal): these are its patterns, and its rule that the character before
# must be the start, a space or punctuation.
_BARE_URL = re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![^\s\W_])([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)")


def _linkable(match: re.Match) -> bool:
    before = match.string[match.start() - 1] if match.start() else " "
    return before.isspace() or unicodedata.category(before).startswith(("P", "S"))


def _autolink_literal(state) -> None:
    for block in state.tokens:
        for token in block.children or []:
            if token.type != "text":
                continue
            urls = [m for m in _BARE_URL.finditer(token.content) if _linkable(m) and "." in m.group(2)]
            emails = [m for m in _EMAIL.finditer(token.content) if _linkable(m)]
            if urls or emails:  # the whole run as one link: enough for the tests to see a link
                token.type, token.content = "html_inline", f'<a href="#">{token.content}</a>'


MD = _streamlit_like()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _render(source: str) -> tuple[str, set[str], str]:
    html = MD.render(source)
    page = _Page()
    page.feed(html)
    return html, set(page.tags), "".join(page.text).strip("\n")


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_as_exactly_itself(text):
    html, tags, visible = _render(literal(text))
    assert tags <= {"p", "br"}, html  # no img, a, script, span (katex, colour, emoji), em, code, h1, table, ...
    assert visible.replace(WORD_JOINER, "") == text  # the word joiner is invisible and zero-width


@pytest.mark.parametrize("text", ATTACKS)
def test_unescaped_text_would_not(text):
    """The renderer above does see the attacks: without literal() every hostile string turns into markup."""
    html, tags, visible = _render(text)
    assert tags - {"p", "br"} or visible != text, html


@pytest.mark.parametrize("text", HOSTILE)
def test_nothing_streamlit_detects_in_the_source_survives(text):
    """Streamlit decides from the raw source whether to load KaTeX and emoji, and rewrites
    ``:material/`` before parsing: none of those triggers is left, as every ASCII punctuation
    character is escaped (so are GFM autolinks, which need a bare ``:`` or ``.``)."""
    out = literal(text).replace(WORD_JOINER, "")
    assert re.fullmatch(r"(?:\\[!-/:-@\[-`{-~]|\\\n|[^!-/:-@\[-`{-~])*", out), out
    assert ":material/" not in out
    assert not re.search(r":(?!material/|streamlit:)[\w+-][\w_+-]*:", out)  # Streamlit's emoji test
    assert not re.search(r"(?<!\\)\$", out)  # Streamlit's maths test looks for unescaped $


def test_embedded_in_markup_it_stays_one_piece():
    """A name inside bold text or a caption sentence cannot close the bold or open anything."""
    html, tags, visible = _render(f"Forks run **{literal('x** ![t](http://h/x.png) **y')}** at steps 1")
    assert tags == {"p", "strong"}, html
    assert visible.replace(WORD_JOINER, "") == "Forks run x** ![t](http://h/x.png) **y at steps 1"


def test_none_empty_and_limits():
    assert literal(None) == ""
    assert literal("") == ""
    assert literal(42) == "42"
    assert literal("abcdefgh", limit=5) == "abcd…"
    assert literal("abc", limit=5) == "abc"
    assert literal("a*b*cdef", limit=4) == "a\\*b…"  # cut before escaping: never half an escape
    assert literal("\r\nx\ry\n") == "x\\\ny"  # line endings normalised; outer blank lines dropped
