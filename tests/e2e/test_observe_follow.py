"""`stoker observe`'s follow mode through the JSON API the page's script uses, against real
`stoker run` tasks: a burst of rotations between two looks (every line comes, in order),
a process that restarts (the follower goes on into its next run, after a marker line), a
`stoker run` re-run that moved the logs aside (into the new attempt's first run), a log
an operator truncated (from its start again), and a range that starts inside a UTF-8 character (it starts at the next one). `Follower` does
what `assets.FOLLOW_SCRIPT` does. Each process waits on a FIFO in its sandbox (`go-PROCESS`) for
the test's word, so what happens between two looks is the test's choice, not the clock's (but
`euro`, the range test's, which only prints). Each test reads the logs of its own process, and
the one that moves the logs aside puts them back: they pass in any order."""
from __future__ import annotations

import html
import os
import re
import shutil
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from executor.observe.logrange import MAX_CHUNK_BYTES
from tests.support.observer import ObservedHost
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

LINES = 200000  # 1.3 MB: 13 files of 100 KiB
BURST = ("mkfifo go-burst; printf 'ready \\342\\202\\254\\342\\202\\254\\n'; "  # "ready €€"
         f"read x < go-burst; seq 1 {LINES}; exec sleep 1000")
EURO = "printf 'ready \\342\\202\\254\\342\\202\\254\\n'; exec sleep 1000"  # a log of its own: burst's rotates
TRUNC = "mkfifo go-trunc; echo a line before the truncation; read x < go-trunc; echo after; exec sleep 1000"
AGAIN = "[ -p go-again ] || mkfifo go-again; echo run start; read x < go-again; echo run end; exit 1"


def job(directory: Path) -> Path:
    path = directory / "follow.aurora"
    path.write_text(textwrap.dedent(f"""
        rotating = Logger(mode='rotate', rotate=RotatePolicy(log_size=100*KB, backups=20))
        jobs = [Service(cluster='local', role='me', environment='test', name='follow',
                        task=Task(processes=[
                            Process(name='burst', cmdline={BURST!r}, logger=rotating),
                            Process(name='again', cmdline={AGAIN!r}, max_failures=5,
                                    min_duration=0.1),
                            Process(name='euro', cmdline={EURO!r}),
                            Process(name='trunc', cmdline={TRUNC!r})],
                                  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                  finalization_wait=2))]
    """))
    return path


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observe-follow")
    observed = ObservedHost(tmp)
    try:
        observed.run(job(tmp))
        observed.observe()
        yield observed
    finally:
        observed.close()


class Follower:
    """The page's script: the latest bytes first, then what follows the file it holds."""

    def __init__(self, host: ObservedHost, process: str) -> None:
        tid = host.json("/api/tasks")[0]["task_id"]
        self.host, self.process = host, process
        self.api = f"/api/tasks/{quote(tid, safe='')}/processes/{process}/logs?stream=stdout" \
                   f"&length={MAX_CHUNK_BYTES}"
        doc = host.json(self.api)
        self.text, self.run, self.file, self.end = doc["data"], doc["run"], doc["file"], doc["end"]
        self.dir = doc.get("dir", "")

    def look(self) -> bool:
        """One fetch; True when it brought something."""
        dir_ = f"&dir={self.dir}" if self.dir else ""
        doc = self.host.json(f"{self.api}&run={self.run}&offset={self.end}&file={self.file}{dir_}")
        moved = doc["end"] > self.end or (doc["run"], doc["file"]) != (self.run, self.file)
        if "continues" not in doc:  # the script before the server went on for it
            return self._before(doc)
        if doc["run"] != self.run:
            self.text += f"==> {self.process} run {doc['run']}: stdout <==\n"
        elif not doc.get("continues", False):
            self.text += "--- from its start ---\n"
        self.run, self.file, self.dir = doc["run"], doc["file"], doc.get("dir", "")
        self.text += doc["data"]
        self.end = doc["end"]
        return moved

    def _before(self, doc: dict) -> bool:
        """What the script did before: another file (or a shorter one) from its start."""
        if doc["size"] < self.end or doc["file"] != self.file:
            self.text += "--- from its start ---\n"
            self.end, self.file = 0, doc["file"]
            return True
        self.text += doc["data"]
        moved, self.end = doc["end"] > self.end, doc["end"]
        return moved

    def until(self, done, secs: float = 10) -> str:
        try:
            wait_for(lambda: not self.look() and done(self.text), secs, interval_secs=0.02)
        except AssertionError:
            lines = self.text.splitlines()
            raise AssertionError(f"following {self.process} never came to the end: "
                                 f"{len(lines)} lines, the last {lines[-3:]!r}") from None
        return self.text


class PageFollower:
    """A browser without JavaScript on the followed page: each `reload()` loads the page its
    `<noscript>` refresh names, and keeps what it showed."""

    def __init__(self, host: ObservedHost, process: str) -> None:
        tid = host.json("/api/tasks")[0]["task_id"]
        self.host = host
        self.url = f"/tasks/{quote(tid, safe='')}/processes/{process}/logs?stream=stdout&follow=1"
        self.pages = [self._load()]

    def _load(self) -> str:
        status, _, body = self.host.get(self.url)
        assert status == 200, (self.url, status, body[:300])
        page = body.decode()
        refresh = re.search(r'<noscript><meta http-equiv="refresh" content="\d+;url=([^"]+)"', page)
        assert refresh is not None, page[:500]
        self.url = html.unescape(refresh.group(1)).split("#", 1)[0]
        shown = re.search(r'<pre class="log"[^>]*>(.*?)</pre>', page, re.S)
        assert shown is not None, page[:500]
        return html.unescape(shown.group(1))

    def reload(self) -> str:
        self.pages.append(self._load())
        return self.pages[-1]


def sandbox(host: ObservedHost) -> Path:
    return host.runs[0].sandbox


def say_go(host: ObservedHost, process: str) -> None:
    with open(sandbox(host) / f"go-{process}", "w") as fifo:  # the process waits on it, reading
        fifo.write("go\n")


def test_a_range_starting_inside_a_character_starts_at_the_next_one(host):
    """An older range's offset (or a file a rotation cut) may fall inside a character: it
    showed U+FFFD for the bytes of the character begun before."""
    wait_for(lambda: (sandbox(host) / ".logs/euro/0/stdout").stat().st_size > 0, 10)
    tid = host.json("/api/tasks")[0]["task_id"]
    doc = host.json(f"/api/tasks/{tid}/processes/euro/logs?run=0&offset=7")  # inside the €
    assert (doc["offset"], doc["data"]) == (9, "€\n")


def test_a_burst_of_rotations_between_two_looks_keeps_every_line_in_order(host):
    """13 rotations between two looks: the page jumped from the file it held to the newest
    (from its start, after a marker), and the 11 files between were never shown."""
    follower, page = Follower(host, "burst"), PageFollower(host, "burst")
    assert follower.text == page.pages[0] == "ready €€\n"
    say_go(host, "burst")
    logs = sandbox(host) / ".logs/burst/0"
    wait_for(lambda: (logs / "stdout").read_bytes().endswith(f"\n{LINES}\n".encode()), 20,
             interval_secs=0.05, message="the burst written")
    assert (logs / "stdout.12").exists()  # the file the follower holds is a backup by now
    text = follower.until(lambda t: t.endswith(f"\n{LINES}\n"))
    assert text == "ready €€\n" + "".join(f"{i}\n" for i in range(1, LINES + 1))
    # Without JavaScript: the page reloaded the same offset of whatever file was `stdout`
    # now, and never showed the rest of the one it held nor the 12 files between. Now each
    # reload shows the held file to its end, then each file written after it, in turn.
    for _ in range(30):  # a reload per file at the most (13 rotations)
        if page.reload().endswith(f"\n{LINES}\n"):
            break
    assert "".join(page.pages[1:]) == text


def test_a_log_truncated_under_the_follower_is_followed_from_its_start(host):
    """`: > stdout` by an operator: the file is shorter than the offset the follower holds,
    so what comes next is from its start, after a marker (never a range past its end)."""
    log = sandbox(host) / ".logs/trunc/0/stdout"
    wait_for(lambda: log.read_bytes() == b"a line before the truncation\n", 10)
    follower = Follower(host, "trunc")
    assert follower.text == "a line before the truncation\n"
    os.truncate(log, 0)
    say_go(host, "trunc")
    assert follower.until(lambda t: t.endswith("after\n")) == (
        "a line before the truncation\n--- from its start ---\nafter\n")


def test_following_goes_on_into_the_next_run_and_the_next_attempt(host):
    """After a restart the page stayed on the run it was opened for, showing nothing more
    for ever; after `stoker run` kept the attempt's logs as `.logs.attempt-N`, it would
    have read the new attempt's file of the same number as if it were the old one."""
    wait_for(lambda: (sandbox(host) / ".logs/again/0/stdout").read_bytes() == b"run start\n", 10)
    follower = Follower(host, "again")
    assert (follower.run, follower.text) == (0, "run start\n")
    say_go(host, "again")
    text = follower.until(lambda t: t.count("run start") == 2)
    assert text == "run start\nrun end\n==> again run 1: stdout <==\nrun start\n"
    # The next attempt of the task (as `stoker run` starts it): the old logs moved aside.
    logs, kept = sandbox(host) / ".logs", sandbox(host) / ".logs.attempt-0"
    os.rename(logs, kept)
    try:
        (logs / "again/0").mkdir(parents=True)
        (logs / "again/0/stdout.1").write_text("second attempt\n")  # rotated
        (logs / "again/0/stdout").write_text("its second file\n")  # already
        text = follower.until(lambda t: t.endswith("its second file\n"))
        assert text.endswith("run start\n==> again run 0: stdout <==\nsecond attempt\nits second file\n")
    finally:  # the first attempt's logs back: the module's other tests read burst's
        shutil.rmtree(logs)
        os.rename(kept, logs)
