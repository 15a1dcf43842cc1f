"""The observer's stylesheet and its one script, served under /static/. PURE.

The pages work without the script: it only makes a followed log fetch the bytes that are
new (`/api/.../logs?offset=END`) and append them, instead of reloading the page (the
`<noscript>` refresh the page carries otherwise). Both are served from here, so the
Content-Security-Policy can forbid every inline script and style.
"""
from __future__ import annotations

STYLE = """\
:root { color-scheme: light dark; --fg: #1d232a; --bg: #fbfbfa; --muted: #5f6b76;
  --line: #d9dde1; --head: #eef1f3; --ok: #197a39; --bad: #b42318; --warn: #9a5700;
  --link: #1a64d6; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ec; --bg: #15191d; --muted: #9aa5b1;
  --line: #2f363d; --head: #1f252b; --ok: #5cc27a; --bad: #ff7a6e; --warn: #f0b04f;
  --link: #6ea8fe; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg); }
header { padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--head);
  display: flex; flex-wrap: wrap; gap: .3rem 1rem; align-items: baseline; }
header a.home { font-weight: 600; text-decoration: none; color: var(--fg); }
header .where { color: var(--muted); font-size: .85rem; overflow-wrap: anywhere; }
main { padding: .5rem 1rem 2rem; max-width: 90rem; }
h1 { font-size: 1.3rem; margin: .8rem 0 .3rem; overflow-wrap: anywhere; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p, dl { margin: .3rem 0; }
a { color: var(--link); }
:focus-visible { outline: 2px solid var(--link); outline-offset: 2px; }
.skip { position: absolute; left: -100vw; }
.skip:focus { position: static; }
.vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%);
  white-space: nowrap; }
.muted { color: var(--muted); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; min-width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .55rem; border-bottom: 1px solid var(--line);
  vertical-align: top; white-space: nowrap; }
th { background: var(--head); font-weight: 600; }
td.wrap { white-space: normal; min-width: 14rem; overflow-wrap: anywhere; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: 600; }
.s-RUNNING, .s-SUCCESS, .s-FINISHED, .s-passed, .s-HEALTHY { color: var(--ok); }
.s-FAILED, .s-LOST, .s-KILLED, .s-failed, .s-UNHEALTHY, .s-SANDBOX_GONE { color: var(--bad); }
.s-JOINED, .s-ACTIVE { color: var(--ok); }
.s-NEW, .s-UNKNOWN, .s-KILLING, .s-STARTING, .s-WAITING, .s-RESTARTING, .s-snoozed, .s-JOINING,
.s-LEAVING, .s-CLEANING, .s-FINALIZING { color: var(--warn); }
.s-GONE, .s-RESTARTED, .s-IDLE, .s-LEFT, .s-CLOSED { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .8rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
pre { background: var(--head); border: 1px solid var(--line); padding: .6rem; margin: .4rem 0;
  font: 13px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  white-space: pre-wrap; overflow-wrap: anywhere; }
pre.log { min-height: 6rem; }
nav.pager { display: flex; flex-wrap: wrap; gap: .4rem 1rem; margin: .4rem 0; }
.note { border-left: 3px solid var(--warn); padding: .2rem .6rem; margin: .5rem 0; }
details summary { cursor: pointer; color: var(--muted); }
@media (max-width: 40rem) { body { font-size: 14px; } main { padding: .4rem .6rem 2rem; }
  th, td { padding: .25rem .4rem; } dl.facts { grid-template-columns: 1fr; }
  dl.facts dt { margin-top: .3rem; } }
"""

KEEP_CHARS = 1 << 20  # of a followed log, what the page keeps (the oldest text goes)

# A followed log: `<pre id="log" data-follow="1" data-api="URL" data-end="N" data-file="F"
# data-run="R" data-dir="D">`. Every second, ask for what follows byte N of file F of run R
# (whose directory is D); the server answers with the rest of that file, or the file a
# rotation wrote after it, or the next run's log (`executor/observe/reader.py`), and the
# script appends it: a new run after a marker line (`==> PROCESS run R: STREAM <==`, as
# `stoker tail -f`), a file the server could not continue from (truncated, or rotated out
# of reach: `continues` false) after a marker line too. It asks again at once while an
# answer brings bytes and more are there (a range is capped, or the file is a rotated one,
# `rotated`: a burst of rotations leaves several files), else a second later: bytes held back (the first ones of a
# character not written yet) are no reason to ask again at once. Past KEEP_CHARS the
# oldest text leaves the page, so a tab left following a chatty log does not grow without
# end (the page without the script starts again from the latest bytes). It stops once an
# answer says the task is over (`over`) and holds the latest run's log to its end. Control characters
# but newlines and tabs are written out (`\x1b`, `\r`), as on the page.
FOLLOW_SCRIPT = """\
(function () {
  "use strict";
  var pre = document.getElementById("log");
  if (!pre || pre.getAttribute("data-follow") !== "1") { return; }
  var api = pre.getAttribute("data-api");
  var end = parseInt(pre.getAttribute("data-end"), 10) || 0;
  var file = pre.getAttribute("data-file") || "";
  var run = pre.getAttribute("data-run") || "";
  var dir = pre.getAttribute("data-dir") || "";
  var process = pre.getAttribute("data-process") || "";
  var stream = (api.match(/[?&]stream=([^&]*)/) || [])[1] || "stdout";
  var state = document.getElementById("follow-state");
  var kept = pre.textContent.length, dropped = false;
  var newline = pre.textContent === "" || pre.textContent.slice(-1) === "\\n";
  function show(text) { if (state) { state.textContent = text; } }
  function later(ms) { window.setTimeout(tick, ms); }
  function printable(text) {  // as the page's first bytes: html.esc_text
    return text.replace(/[\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]/g, function (c) {
      var code = c.charCodeAt(0);  // a C1 control as \\u0085: \\x85 is the byte 0x85's
      return c === "\\r" ? "\\\\r" : code >= 0x80 ? "\\\\u00" + code.toString(16)
        : "\\\\x" + ("0" + code.toString(16)).slice(-2);
    });
  }
  function append(text) {
    if (!text) { return; }
    pre.appendChild(document.createTextNode(printable(text)));
    kept += text.length;
    newline = text.slice(-1) === "\\n";
    while (kept > KEEP_CHARS && pre.firstChild !== pre.lastChild) {
      kept -= pre.firstChild.textContent.length;
      pre.removeChild(pre.firstChild);
      dropped = true;
    }
  }
  function marker(text) { append((newline ? "" : "\\n") + text + "\\n"); }
  function held() {
    var q = "&run=" + encodeURIComponent(run) + "&offset=" + end;
    if (file) { q += "&file=" + encodeURIComponent(file); }
    if (dir) { q += "&dir=" + encodeURIComponent(dir); }
    return q;
  }
  function tick() {
    fetch(api + held(), {cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (doc) {
      var moved = doc.end > end || String(doc.run) !== run || (doc.file || "") !== file;
      if (String(doc.run) !== run) {
        marker("==> " + process + " run " + doc.run + ": " + stream + " <==");
      } else if (!doc.continues) {
        marker("--- a new log file (rotated past what was shown) or a shorter one " +
               "(truncated): from its start ---");
      }
      run = String(doc.run);
      file = doc.file || "";
      dir = doc.dir || "";
      var bottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      if (doc.data) { append(doc.data); }
      end = doc.end;
      pre.setAttribute("data-end", String(end));
      show("following: " + end + " bytes shown up to now" + (dropped ?
        "; older bytes left the page, which keeps the last KEEP_TEXT" : ""));
      if (bottom) { window.scrollTo(0, document.body.scrollHeight); }
      if (doc.over && doc.end >= doc.size && !doc.rotated &&
          (!doc.runs.length || doc.runs[doc.runs.length - 1] <= doc.run)) {
        show("not following: the task is over, so nothing more is written to this log");
        return;
      }
      later(moved && (doc.end < doc.size || doc.rotated) ? 0 : 1000);
    }).catch(function (e) { show("not following: " + e.message + " (retrying)"); later(3000); });
  }
  show("following");
  later(1000);
}());
""".replace("KEEP_CHARS", str(KEEP_CHARS)).replace("KEEP_TEXT", f"{KEEP_CHARS >> 20} MiB of text")

ASSETS: dict[str, tuple[str, str]] = {
    "observe.css": ("text/css; charset=utf-8", STYLE),
    "follow.js": ("text/javascript; charset=utf-8", FOLLOW_SCRIPT),
}
