"""The pages' frame and small parts: layout, escaping, tables, links. PURE.

Everything that came from a sandbox, the registry or a log (names, reasons, commands, log
text) goes through `esc` (HTML-escaped, control characters written out as escapes), and
every URL is built by `task_url`/`log_url` with each segment percent-encoded, so a task id
or process name can neither inject markup nor leave its path segment.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from urllib.parse import quote, urlencode

from config.words import printable


def esc(value: object) -> str:
    """`value` as text safe in HTML (quotes included) and free of control characters."""
    return html.escape(printable(str(value)), quote=True)


def esc_text(text: str) -> str:
    """Log text for a <pre>: HTML-escaped; newlines and tabs kept, other controls escaped."""
    return html.escape("\n".join("\t".join(printable(part) for part in line.split("\t"))
                                 for line in text.split("\n")), quote=False)


def task_url(task_id: str, api: bool = False, supervisor: str = "") -> str:
    """A task's page (or its JSON, `api`); `supervisor` (PID-START): that supervisor's
    task of the id, which another running task may share (`routes`)."""
    where = f"?{urlencode({'supervisor': supervisor})}" if supervisor else ""
    return f"{'/api' if api else ''}/tasks/{quote(task_id, safe='')}{where}"


def log_url(task_id: str, process: str, *, api: bool = False, supervisor: str = "",
            **params: object) -> str:
    """The log page (or its JSON, `api`) with `params` as the query (None ones left out),
    of `supervisor`'s task (`task_url`)."""
    query = urlencode({k: v for k, v in {**params, "supervisor": supervisor or None}.items()
                       if v is not None})
    base = f"{task_url(task_id, api)}/processes/{quote(process, safe='')}/logs"
    return f"{base}?{query}" if query else base


def state(text: object) -> str:
    """A state name, coloured by what it means (the stylesheet's `s-NAME` classes; a space in
    the name an underscore: `SANDBOX GONE`'s is `s-SANDBOX_GONE`)."""
    name = str(text)
    css = name.replace(" ", "_") if name.replace(" ", "").isalnum() else "other"
    return f'<span class="state s-{css}">{esc(name)}</span>'


def cell(content: str, css: str = "") -> str:
    return f'<td class="{css}">{content}</td>' if css else f"<td>{content}</td>"


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]],
          numeric: Sequence[int] = (), wrap: Sequence[int] = ()) -> str:
    """A table that scrolls inside its own box (a focusable region named by `caption`, so
    a keyboard scrolls it too); `caption` is for screen readers (the heading above it says
    it to the eye); cells are already HTML. `numeric`/`wrap`: column indexes."""
    head = "".join(f'<th scope="col" class="num">{esc(h)}</th>' if i in numeric
                   else f'<th scope="col">{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r in rows:
        cells = [cell(c, "num" if i in numeric else "wrap" if i in wrap else "")
                 for i, c in enumerate(r)]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll" tabindex="0" role="region" aria-label="{esc(caption)}">'
            f'<table><caption class="vh">{esc(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are already HTML."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


def page(title: str, body: str, *, where: str = "", head_extra: str = "",
         scripts: Sequence[str] = ()) -> str:
    """A whole page: the header with a link home, `body`, and the given /static scripts."""
    tags = "".join(f'<script src="/static/{esc(s)}" defer></script>' for s in scripts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · stoker observe</title>"
        '<link rel="stylesheet" href="/static/observe.css">'
        f"{head_extra}{tags}</head><body>"
        '<header><a class="skip" href="#main">Skip to the page\'s content</a>'
        '<a class="home" href="/">stoker observe</a>'
        f'<span class="where">{where}</span></header>'
        f'<main id="main">{body}</main></body></html>\n'
    )


def error_page(status: int, reason: str) -> str:
    return page(f"{status}", f"<h1>{status}</h1><p>{esc(reason)}</p>"
                             '<p><a href="/">All tasks</a></p>')
