"""User text shown as text: the one way pages put names, messages and values into Streamlit's Markdown.

Nearly everything Streamlit draws is Markdown: ``st.title``, ``st.caption``, ``st.error``,
``st.progress(text=)``, ``st.toast``, widget labels and ``help`` tooltips. A zoo named
``![t](http://host/x.png)`` would make every viewer's browser fetch that URL, and ``$…$``,
``:red[…]``, ``[link](…)``, ``**…**`` or an autolinked ``http://…`` would render as LaTeX, colour,
links and emphasis. :func:`literal` backslash-escapes every ASCII punctuation character (CommonMark
allows an escape before any of them and shows the character itself), so no Markdown construct, and
none of Streamlit's additions (directives ``:red[…]``, ``:material/…:`` icons, emoji shortcodes,
``$`` maths, tables, strikethrough), can start inside user text; bare URLs and e-mail addresses,
which GFM links after parsing, get an invisible word joiner that breaks the pattern. Widgets that take
options (``st.selectbox``, ``st.multiselect``) and ``st.dataframe`` cells show plain text already;
report notes, which are meant to be Markdown, go through :func:`engine.report.markdown_to_html`
(no raw HTML, no images) instead.
"""

from __future__ import annotations

import re

__all__ = ["WORD_JOINER", "literal"]

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character, `\` included
_NEWLINES = re.compile(r"\r\n?")
# GFM turns bare URLs and e-mail addresses into links *after* parsing, on the text itself, so
# escapes do not stop it (Streamlit's remark-gfm: ``(https?://|www(?=\.))…`` and ``…@domain``).
# An invisible, zero-width WORD JOINER inside ``http://``, ``www.`` and before ``@`` breaks those
# patterns; the glyphs on screen are the same.
_AUTOLINK = re.compile(r"(?<=http)(?=s?://)|(?<=www)(?=\.)|(?<=[-.\w+])(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def literal(text: object, *, limit: int | None = None) -> str:
    """``text`` escaped so that Streamlit's Markdown shows exactly its characters.

    Parameters
    ----------
    text : object
        Any user-controlled value (a name, a message, an error); ``None`` gives ``""``.
    limit : int, optional
        Keep at most this many characters of ``text`` (an ellipsis marks a cut), counted
        before escaping, so a cut never splits an escape.

    Returns
    -------
    str
        Markdown source whose rendering is ``text``: every ASCII punctuation character
        is preceded by a backslash, line breaks become Markdown hard line breaks, and a
        :data:`WORD_JOINER` (invisible) sits inside every ``http://``, ``www.`` and before
        every ``@`` so that GFM does not make links of them.

    Examples
    --------
    >>> literal("![t](x.png) **b**")
    '\\\\!\\\\[t\\\\]\\\\(x\\\\.png\\\\) \\\\*\\\\*b\\\\*\\\\*'
    """
    s = "" if text is None else str(text)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    s = _AUTOLINK.sub(WORD_JOINER, _NEWLINES.sub("\n", s).strip("\n"))
    s = _PUNCTUATION.sub(r"\\\1", s)
    return s.replace("\n", "\\\n")  # a backslash at the end of a line is a hard line break
