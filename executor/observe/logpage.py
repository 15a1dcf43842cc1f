"""One run's log as a page. PURE: a `LogChunk` in, HTML out.

The page shows a range of the log (by default its last 64 KiB, from its first whole line)
with links to the range before and after, to the latest bytes, to the process's other runs
and streams (rotated parts included), and to follow mode.

Follow mode, `follow=1`: without JavaScript the page reloads itself every
`REFRESH_SECS` (a `<noscript>` refresh) showing from the same offset of the same file, so
what was shown stays and what is new is added below, until the range would pass
`MAX_CHUNK_BYTES`: then it shows the latest bytes again (the latest run's, once a newer run
has begun). The reload names the file it shows, as the script does: once a rotation moved
it aside, the page shows it to its end, then each file written after it in turn, from its
start (it reloaded the same offset of whatever file had the name, and never showed what
the file held last). With
JavaScript (`assets.FOLLOW_SCRIPT`) nothing is reloaded: the script fetches only the bytes
after the last one shown, naming the file and run directory it holds, and appends them,
keeping the last `assets.KEEP_CHARS` characters in the page; the server goes on from there
into the files a rotation wrote since and into the process's next runs.

Either stops (`all_shown`) once the task is over, its supervisor let go or gone (`over`,
read from the registry before the log), and the page shows the latest run's log to its
end: nothing more can be written, and a tab left open asks for nothing.
"""
from __future__ import annotations

from executor.observe.html import esc, esc_text, log_url, page, task_url
from executor.observe.logrange import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, newer, older
from executor.observe.model import LogChunk
from executor.task.usagefigures import size_text

REFRESH_SECS = 2


def _link(c: LogChunk, text: str, **params: object) -> str:
    merged: dict[str, object] = {"run": c.run, "stream": c.stream}
    merged.update(params)
    url = log_url(c.task_id, c.process, api=False, supervisor=c.supervisor, **merged)
    return f'<a href="{esc(url)}">{esc(text)}</a>'


def refresh_url(c: LogChunk) -> str:
    """Where a followed page reloads to without JavaScript: the same start of the same file
    (named, so that a rotation meanwhile shows the rest of it, now a backup) while the range
    stays under the cap; a rotated file shown to its end: the file written after it, from its
    start; else the latest bytes (the latest run's, once a newer run has begun)."""
    file, run_dir = c.file or None, c.run_dir or None
    at_end = c.end >= c.size
    if at_end and c.rotated:  # a file rotated aside, shown to its end: the one after it
        return log_url(c.task_id, c.process, supervisor=c.supervisor, run=c.run, stream=c.stream, follow=1,
                       offset=c.end, length=MAX_CHUNK_BYTES, file=file, dir=run_dir) + "#end"
    if at_end and c.runs and c.runs[-1] > c.run:  # a newer run has begun
        return log_url(c.task_id, c.process, supervisor=c.supervisor, stream=c.stream, follow=1) + "#end"
    if at_end and c.size - c.start < MAX_CHUNK_BYTES:
        return log_url(c.task_id, c.process, supervisor=c.supervisor, run=c.run, stream=c.stream, follow=1,
                       offset=c.start, length=MAX_CHUNK_BYTES, file=file, dir=run_dir) + "#end"
    return log_url(c.task_id, c.process, supervisor=c.supervisor, run=c.run, stream=c.stream, follow=1) + "#end"


def all_shown(c: LogChunk) -> bool:
    """Nothing more can come after this chunk: its task is over (its supervisor let go or
    is gone) and it shows the latest run's log to its end. Following it stops there."""
    latest = not c.runs or c.runs[-1] <= c.run
    return c.over and c.end >= c.size and not c.rotated and latest


def _pager(c: LogChunk, follow: bool, where: str) -> str:
    links = []
    data_end = c.start - c.hole_before  # the range before ends where a hole before it begins
    before = older(data_end)
    if before is not None:
        links.append(_link(c, f"◀ older ({size_text(c.start)} before)", offset=before,
                           length=min(DEFAULT_CHUNK_BYTES, data_end)))
        links.append(_link(c, "from the start", offset=0))
    after = newer(c.end, c.size)
    if after is not None:
        links.append(_link(c, f"newer ({size_text(c.size - c.end)} after) ▶", offset=after))
    links.append(_link(c, "latest"))
    links.append(_link(c, "stop following") if follow else _link(c, "follow", follow=1))
    return f'<nav class="pager" aria-label="log ranges ({where})">{" ".join(links)}</nav>'


def _others(c: LogChunk) -> str:
    runs = " ".join(f"<strong>{r}</strong>" if r == c.run else _link(c, str(r), run=r)
                    for r in c.runs)
    streams = " ".join(f"<strong>{esc(s)}</strong>" if s == c.stream else _link(c, s, stream=s)
                       for s in c.parts)
    return (f'<p class="muted">runs: {runs or "-"} · streams: {streams or "-"}</p>')


def log_page(c: LogChunk, follow: bool) -> str:
    title = f"{c.process} run {c.run} {c.stream}"
    shown = (f"bytes {c.start}–{c.end} of {c.size} ({size_text(c.size)})"
             + (f"; at most {size_text(MAX_CHUNK_BYTES)} a page" if c.capped else ""))
    api = log_url(c.task_id, c.process, api=True, supervisor=c.supervisor, stream=c.stream,
                  length=MAX_CHUNK_BYTES)
    done = follow and all_shown(c)
    follow = follow and not done
    state = '<p class="muted" id="follow-state">following (reloads every ' \
            f"{REFRESH_SECS} s)</p>" if follow else ""
    if done:
        state = ('<p class="muted" id="follow-state">not following: the task is over, so nothing more '
                 "is written to this log</p>")
    body = (f"<h1>{esc(title)}</h1>"
            f'<p><a href="{esc(task_url(c.task_id, supervisor=c.supervisor))}">task {esc(c.task_id)}</a></p>'
            f"{_others(c)}{_pager(c, follow, 'above the log')}"
            f'<p class="muted">{esc(shown)}</p>{state}'
            f'<pre class="log" id="log" data-follow="{1 if follow else 0}" '
            f'data-api="{esc(api)}" data-end="{c.end}" data-file="{esc(c.file)}" '
            f'data-run="{c.run}" data-dir="{esc(c.run_dir)}" data-process="{esc(c.process)}">'
            f"{esc_text(c.data)}</pre>"
            f'<span id="end"></span>{_pager(c, follow, "below the log")}')
    head = (f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECS};url='
            f'{esc(refresh_url(c))}"></noscript>') if follow else ""
    return page(f"{title} of task {c.task_id}", body, where=esc(f"{c.task_id} / {c.process}"), head_extra=head,
                scripts=("follow.js",) if follow else ())
