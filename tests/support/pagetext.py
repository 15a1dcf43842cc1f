"""An observer page as its reader meets it, one line per block of its `<main>`: what a test
compares whole, so that a word, a column or a cell's place that changes shows.

    h1 t-1                                a heading (h1, h2, h3)
    p.muted CPU % is per cent of ...      a paragraph and its class
    dl job key=c/r/e/hello | state=...    a definition list's pairs
    details web: 3 runs                   a folded part's summary (its content follows)
    table Processes: process | run# | reason~
      web | 0# | started~                 a row: `#` a numeric cell, `~` a wrapped one
    pre {...}                             preformatted text, whole
    text ...                              text outside any block (none is meant to be)

Inline: a state is `[RUNNING]` (`[LOST (recorded RUNNING)|s-LOST]` when its colour is not
its name's), a link `json<"/api/tasks/t-1">`, a `<pre>` in a cell `{text}`.
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

_BLOCKS = {"h1", "h2", "h3", "p", "dt", "dd", "summary", "caption", "th", "td", "pre"}
_MARK = {"num": "#", "wrap": "~"}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._in_main = False
        self._text: list[str] = []  # the block being read
        self._block: tuple[str, str] | None = None  # (tag, css)
        self._spans: list[str] = []  # the state spans open: their css
        self._links: list[str] = []
        self._pairs: list[str] = []  # a dl's, until it closes
        self._row: list[str] = []
        self._pre_in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "main":
            self._in_main = True
        elif not self._in_main:
            return
        elif tag == "pre" and self._block is not None:
            self._pre_in_cell = True
            self._text.append("{")
        elif tag in _BLOCKS:
            self._block, self._text = (tag, a.get("class", "")), []
        elif tag == "span":
            self._spans.append(a.get("class", ""))
            self._text.append("[")
        elif tag == "a":
            self._links.append(a.get("href", ""))
        elif tag == "details":
            self.lines.append("details")

    def handle_endtag(self, tag: str) -> None:
        if not self._in_main:
            return
        if tag == "main":
            self._in_main = False
        elif tag == "pre" and self._pre_in_cell:
            self._pre_in_cell = False
            self._text.append("}")
        elif tag == "span" and self._spans:
            self._close_span(self._spans.pop())
        elif tag == "a" and self._links:
            self._text.append(f'<"{self._links.pop()}">')
        elif self._block is not None and tag == self._block[0]:
            self._close_block()
        elif tag == "dl":
            self.lines.append("dl " + " | ".join(self._pairs))
            self._pairs = []
        elif tag == "tr" and self._row:
            self.lines.append("  " + " | ".join(self._row))
            self._row = []

    def _close_span(self, css: str) -> None:
        shown = "".join(self._text[len(self._text) - self._text[::-1].index("["):])
        named = css.removeprefix("state ").removeprefix("s-")
        if named != shown.replace(" ", "_"):
            self._text.append(f"|s-{named}")
        self._text.append("]")

    def _close_block(self) -> None:
        assert self._block is not None
        tag, css = self._block
        text, self._block = "".join(self._text), None
        if tag == "dt":
            self._pairs.append(text + "=")
        elif tag == "dd":
            self._pairs[-1] += text
        elif tag in ("th", "td"):
            self._row.append(text + _MARK.get(css, ""))
        elif tag == "caption":
            self.lines.append(f"table {text}:")
        elif tag == "summary":
            self.lines[-1] = f"details {text}"
        else:
            self.lines.append(f"{tag}.{css} {text}" if css else f"{tag} {text}")

    def handle_data(self, data: str) -> None:
        if self._in_main and self._block is not None:
            self._text.append(data)
        elif self._in_main and data.strip():  # text between blocks: no page writes any
            self.lines.append(f"text {data.strip()}")


def page_lines(html: str) -> list[str]:
    """The page's `<main>`, as the module's docstring reads it: a table's header row is the
    line after its caption's."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    lines: list[str] = []
    for line in reader.lines:
        if lines and lines[-1].startswith("table ") and lines[-1].endswith(":") and line.startswith("  "):
            lines[-1] += " " + line.strip()  # the header row, beside the caption
        else:
            lines.append(line)
    return lines


def title_and_where(html: str) -> tuple[str, str]:
    """The page's title and what its header says it is of (a registry, a job key)."""
    title = re.search(r"<title>(.*?)</title>", html)
    where = re.search(r'<span class="where">(.*?)</span>', html)
    assert title is not None and where is not None, html[:300]
    return unescape(title.group(1)), unescape(where.group(1))
