"""The observer's pages from a replayed view: what they show, in which order, and that
nothing from a sandbox can inject markup. Pure: no files, no server."""
from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.truth import judge
from executor.observe.logpage import log_page, refresh_url
from executor.observe.logrange import MAX_CHUNK_BYTES
from executor.observe.model import (
    SINCE_LAST_LOOK,
    SINCE_START,
    CpuSample,
    LogChunk,
    TaskDetail,
    TaskSummary,
    Usage,
    cpu_look,
)
from executor.observe.pages import task_page, tasks_page
from executor.task.inspection import Inspection, Leftover
from executor.task.inspectionjson import row
from executor.task.replay import replay
from executor.task.taskview import AnnouncementView

EVIL = '<script>alert(1)</script>"\x1b[31m'
NOW = 1000.0


def records(name: str = "web", reason: str = "started"):
    return [
        {"kind": "header", "wall": 100.0, "task": "hello.0", "job_key": "c/r/e/hello",
         "task_id": "t-1", "sandbox": "/sb", "ports": {"http": 31000}, "supervisor_pid": 4000,
         "processes": [name], "health": "HTTP GET http://localhost:31000/health"},
        {"kind": "task", "wall": 100.0, "to": "STARTING", "reason": "task launched"},
        {"kind": "process", "wall": 100.1, "process": name, "run": 0, "from": "WAITING",
         "to": "RUNNING", "reason": reason, "pid": 4001},
        {"kind": "health", "wall": 101.0, "outcome": "failed", "reason": EVIL, "latency_secs": 0.0021,
         "state": "STARTING", "attempts": 1, "consecutive_failures": 1, "consecutive_successes": 0},
        {"kind": "task", "wall": 102.0, "from": "STARTING", "to": "RUNNING", "reason": "healthy"},
    ]


def entry(task_id: str = "t-1", ended: float | None = None) -> RegistryEntry:
    return RegistryEntry(sandbox="/sb", supervisor_pid=4000, supervisor_start=1, supervisor_boot="b",
                         front_end=FrontEnd.RUN, registered_wall=100.0, task_id=task_id,
                         job_key="c/r/e/hello", ended_wall=ended)


def detail(recs=None, alive=True, leftovers=(), usage=None, task_id="t-1") -> TaskDetail:
    view = replay(recs or records())
    truth = judge(view.state, alive, last_record_wall=102.0, checkpoint_mtime=None, registry_wall=None)
    insp = Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth,
                      leftovers=tuple(leftovers))
    return TaskDetail(row=row(entry(task_id), insp), inspection=insp, usage=usage or {},
                      definition={"task_id": task_id, "task": {"processes": [
                          {"name": "web", "cmdline": f"echo {EVIL}", "max_failures": 1}]}},
                      definition_problem="", status={})


def no_markup_from(text: str) -> bool:
    return "<script>" not in text and "\x1b" not in text


def test_the_task_page_shows_processes_usage_health_history_and_definition():
    usage = {"web": Usage(pid=4001, processes=3, rss_bytes=5 * 1024 * 1024, cpu_percent=12.5,
                          cpu_basis=SINCE_LAST_LOOK, started_wall=100.1)}
    text = task_page(detail(usage=usage), NOW)
    assert "<td>4001</td>" in text.replace('<td class="num">', "<td>")
    assert "12.5" in text and "5.0 MiB" in text and "http=31000" in text
    assert "2.1 ms" in text and "task launched" in text and "healthy" in text
    assert '/tasks/t-1/processes/web/logs?run=0&amp;stream=stdout' in text
    assert "&lt;script&gt;" in text and no_markup_from(text) and "\\x1b[31m" in text


def test_the_cpu_percent_s_basis_is_in_the_page_s_text_not_only_in_a_tooltip():
    """A `title` reaches neither a keyboard nor a touch screen: a line under the table says
    what CPU % measures, naming the processes when their bases differ."""
    usage = {"web": Usage(pid=4001, processes=1, rss_bytes=1024, cpu_percent=12.5,
                          cpu_basis=SINCE_LAST_LOOK, started_wall=100.1)}
    text = task_page(detail(usage=usage), NOW)
    assert ('<p class="muted">CPU % is per cent of one core (100 = one core busy), '
            'since the previous look.</p>') in text
    assert "title=" not in text.split("<h2>Processes")[1].split("</table>")[0]
    usage["db"] = Usage(pid=4002, processes=1, rss_bytes=1024, cpu_percent=1.0,
                        cpu_basis=SINCE_START, started_wall=100.1)
    recs = records()
    recs[0]["processes"] = ["web", "db"]
    recs.insert(3, dict(recs[2], process="db", pid=4002))
    text = task_page(detail(recs, usage=usage), NOW)
    assert ("one core busy), average since the run started for db; since the previous look "
            "for web.</p>") in text
    unmeasured = {"web": attrs.evolve(usage["web"], cpu_percent=None)}
    assert "CPU % is" not in task_page(detail(usage=unmeasured), NOW)


def test_a_live_runs_uptime_is_from_its_kernel_start_whatever_the_wall_clock_did_since():
    """The run's start was recorded at 100.1 by the wall clock; the clock was stepped back
    since (or forward: a VM resumed after days), and the kernel's start of the same process,
    read in today's clock, is 940.0: it has been up a minute, not a quarter of an hour."""
    usage = {"web": Usage(pid=4001, processes=1, rss_bytes=1024, cpu_percent=None,
                          cpu_basis=SINCE_LAST_LOOK, started_wall=940.0)}
    assert "up 1m00s" in task_page(detail(usage=usage), NOW)
    assert "up 14m59s" in task_page(detail(), NOW)  # no usage (not running any more): as recorded


def test_a_lost_task_shows_lost_and_its_leftovers():
    d = detail(alive=False, leftovers=[Leftover(4242, "web", 0, "sleep 1000")])
    text = task_page(d, NOW)
    assert "supervisor gone since" in text and "s-LOST" in text
    assert "Leftover processes" in text and "4242" in text and "sleep 1000" in text


def test_a_task_whose_supervisor_died_while_killing_says_so_beside_the_kill_s_end():
    """As `stoker status` says it (was: a bare KILLED, its leftovers listed under a task
    shown ended as any other)."""
    recs = [*records(), {"kind": "task", "wall": 103.0, "from": "RUNNING", "to": "KILLING",
                         "reason": "killed by the operator (stoker kill)", "ends_as": "KILLED"}]
    view = replay(recs)
    truth = judge(view.state, False, last_record_wall=103.0, checkpoint_mtime=None, registry_wall=None,
                  killing_ends_as=view.current.killing_ends_as)
    insp = Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth,
                      leftovers=(Leftover(4242, "web", 0, "sleep 1000"),))
    d = attrs.evolve(detail(), row=row(entry(), insp), inspection=insp)
    text = task_page(d, NOW)
    assert "s-KILLED" in text and " (its supervisor died while killing; recorded KILLING)" in text
    assert "Leftover processes" in text and "4242" in text


def test_an_earlier_attempt_that_recorded_no_end_is_coloured_as_lost():
    again = [dict(records()[0], wall=200.0, supervisor_pid=4100), *records()[1:3]]
    text = task_page(detail(recs=records() + again), NOW)
    earlier = text.split("<h2>Earlier attempts</h2>", 1)[1]
    assert '<span class="state s-LOST">LOST (recorded RUNNING)</span>' in earlier


def test_hostile_names_are_escaped_everywhere():
    name = 'w"><img src=x onerror=alert(1)>'
    recs = records(name=name, reason=EVIL)
    d = detail(recs=recs, task_id='id"><script>x</script>')
    text = task_page(d, NOW)
    assert no_markup_from(text) and "<img" not in text
    assert "/tasks/id%22%3E%3Cscript%3Ex%3C%2Fscript%3E/processes/w%22%3E%3Cimg" in text
    listing = tasks_page([TaskSummary(d.row, {"a": 1})], NOW, "/root")
    assert no_markup_from(listing) and "<img" not in listing


def test_a_sandbox_whose_name_is_not_utf8_is_shown_with_the_byte_written_out():
    """A sandbox made as b'/tmp/sb-\\xff' is '/tmp/sb-\\udcff' to Python: the task page
    failed with a 500 (UnicodeEncodeError: surrogates not allowed) as it was encoded."""
    d = detail()
    d = attrs.evolve(d, row=dict(d.row, sandbox="/tmp/sb-\udcff"),
                     inspection=attrs.evolve(d.inspection, sandbox=Path("/tmp/sb-\udcff")))
    assert "<dd>/tmp/sb-\\xff</dd>" in task_page(d, NOW).encode("utf-8").decode()
    assert "registry /root-\\xfe" in tasks_page([TaskSummary(d.row, {})], NOW, "/root-\udcfe").encode("utf-8").decode()


def test_the_list_shows_live_tasks_first_then_ended_newest_first():
    live_old = dict(row_of("live-old", 100.0), ended=False)
    live_new = dict(row_of("live-new", 200.0), ended=False)
    ended = dict(row_of("ended", 300.0), ended=True, state="FINISHED")
    text = tasks_page([TaskSummary(r, {}) for r in (ended, live_old, live_new)], NOW, "/root")
    order = [m for m in re.findall(r'href="/tasks/([^"]+)"', text)]
    assert order == ["live-new", "live-old", "ended"]
    assert "2 live, 1 ended" in text


def row_of(task_id: str, started: float) -> dict:
    return dict(row(entry(task_id), Inspection(Path("/sb"), None, None, judge(None, True,
                last_record_wall=None, checkpoint_mtime=None, registry_wall=None))), started=started)


def test_the_task_page_shows_the_serverset_member_and_since_when():
    d = detail()
    announced = AnnouncementView(path="/aurora/r/e/hello", member="member_0000000003",
                                 state="JOINED", connection="CONNECTED", reason="healthy",
                                 since_wall=NOW - 65)
    d = attrs.evolve(d, inspection=attrs.evolve(
        d.inspection, attempt=attrs.evolve(d.inspection.attempt, announcement=announced)))
    text = task_page(d, NOW)
    assert "Service discovery" in text and "/aurora/r/e/hello/member_0000000003" in text
    assert "JOINED" in text and "1m05s" in text
    assert "Service discovery" not in task_page(detail(), NOW)


def chunk(**kw) -> LogChunk:
    base = dict(task_id="t-1", process="web", run=2, stream="stdout", start=0, end=5, size=5,
                data="hi\x1b[0m\n<b>", capped=False, runs=(0, 1, 2), parts=("stderr", "stdout", "stdout.1"))
    base.update(kw)
    return LogChunk(**base)


def test_the_log_page_links_older_parts_runs_and_streams():
    text = log_page(chunk(start=200_000, end=265_536, size=300_000), follow=False)
    assert "older" in text and "offset=134464" in text and "newer" in text and "offset=265536" in text
    assert "run=1" in text and "stream=stdout.1" in text and "follow=1" in text
    assert "&lt;b&gt;" in text and "\\x1b[0m" in text and "<noscript>" not in text


def test_following_without_javascript_reloads_from_the_same_offset_until_the_cap():
    assert "offset=100" in refresh_url(chunk(start=100, end=500, size=500))
    assert "offset" not in refresh_url(chunk(start=0, end=MAX_CHUNK_BYTES, size=MAX_CHUNK_BYTES + 10))
    text = log_page(chunk(), follow=True)
    assert '<noscript><meta http-equiv="refresh" content="2;url=' in text
    assert 'data-follow="1"' in text and "/static/follow.js" in text and 'data-end="5"' in text


def test_following_without_javascript_names_the_file_it_shows_and_steps_past_a_rotated_one():
    """The reload named no file: after a rotation it showed the same offset of the new file,
    never the rest of the one it held, nor the files a burst of rotations left between."""
    held = chunk(start=100, end=500, size=500, file="3:7", run_dir="3:4")
    assert refresh_url(held) == ("/tasks/t-1/processes/web/logs?run=2&stream=stdout&follow=1&offset=100"
                                 f"&length={MAX_CHUNK_BYTES}&file=3%3A7&dir=3%3A4#end")
    rotated = attrs.evolve(held, start=0, rotated=True)  # it was moved aside: shown to its end
    assert "offset=500&" in refresh_url(rotated) and "file=3%3A7" in refresh_url(rotated)
    past_the_cap = attrs.evolve(held, rotated=True, end=400)  # as an unrotated one: the latest bytes
    assert refresh_url(past_the_cap) == "/tasks/t-1/processes/web/logs?run=2&stream=stdout&follow=1#end"


def test_a_followed_run_that_a_newer_run_came_after_goes_on_to_the_latest():
    assert "run=" not in refresh_url(chunk(run=1, start=0, end=5, size=5))  # the latest run's
    assert "run=1" in refresh_url(chunk(run=1, start=0, end=3, size=5))  # not at its end yet
    text = log_page(chunk(run_dir="3:4", file="3:5"), follow=True)
    assert 'data-run="2" data-dir="3:4"' in text and 'data-file="3:5"' in text


def test_cpu_percent_is_since_the_previous_look_else_the_average():
    assert cpu_look(CpuSample(10.0, 1.0), CpuSample(12.0, 2.0), 100.0)[:2] == (50.0, SINCE_LAST_LOOK)
    assert cpu_look(None, CpuSample(12.0, 2.0), 100.0)[0] == 2.0
    assert cpu_look(CpuSample(11.95, 1.0), CpuSample(12.0, 2.0), 10.0)[0] == 20.0  # too soon, nothing measured
    assert cpu_look(CpuSample(10.0, 3.0), CpuSample(12.0, 2.0), 10.0)[0] == 20.0  # lost time
    assert cpu_look(None, CpuSample(12.0, 2.0), None)[:2] == (None, "average since the run started")


def test_a_look_too_soon_after_the_one_that_measured_shows_its_figure_and_keeps_its_window():
    """Two viewers a tenth of a second apart (a page and a scraper): each look within
    MIN_INTERVAL_SECS of the previous one showed the average since the run started, and kept
    its own sample, so the figure flipped between the two at every refresh and the next
    look measured from it."""
    percent, basis, first = cpu_look(None, CpuSample(10.0, 1.0), 100.0)
    assert (percent, basis) == (1.0, SINCE_START)
    percent, basis, kept = cpu_look(first, CpuSample(10.1, 1.05), 100.1)  # too soon, nothing measured yet:
    assert basis == SINCE_START and kept == first  # the window stays open from the first look
    percent, basis, measured = cpu_look(kept, CpuSample(12.0, 2.0), 102.0)
    assert (percent, basis) == (50.0, SINCE_LAST_LOOK) and measured.at == 12.0
    percent, basis, kept = cpu_look(measured, CpuSample(12.1, 2.1), 102.1)  # too soon: the last measure
    assert (percent, basis) == (50.0, SINCE_LAST_LOOK) and kept == measured
    percent, basis, kept = cpu_look(kept, CpuSample(12.25, 2.225), 102.25)  # 0.25 s after the measure
    assert basis == SINCE_LAST_LOOK and percent == pytest.approx(90.0) and kept.at == 12.25


def test_the_list_names_the_entries_another_stoker_version_wrote_whose_supervisors_run():
    text = tasks_page([], NOW, "/var/run/stoker", ["4242-99.json"])
    assert ("Not listed: 1 entry of the registry this version of Stoker does not read (another "
            "version's, or damaged), whose supervisor runs: 4242-99.json.") in text
    assert "Not listed" not in tasks_page([], NOW, "/var/run/stoker")


def test_the_task_page_shows_use_against_reservation_with_a_dash_and_the_reason_when_unknown():
    from executor.task.usagefigures import Live, UsageRecord, figures

    rec = UsageRecord(cpu=0.5, ram_bytes=64 * 1024 * 1024, disk_bytes=8 * 1024 * 1024, check_secs=None)
    d = attrs.evolve(detail(), figures=figures(rec, "", Live(0.125, 16 * 1024 * 1024, basis=SINCE_LAST_LOOK)))
    text = task_page(d, NOW)
    section = text.split("<h2>Resources</h2>", 1)[1].split("<h2>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", section)
    assert cells[:4] == ["cpu", "0.12", "0.50", "25%"] and cells[5:9] == ["ram", "16.0 MiB", "64.0 MiB", "25%"]
    assert cells[10:14] == ["disk", "-", "8.0 MiB", "-"]
    assert "the disk-limit check is off for this task" in cells[14]
    assert "<h2>Resources</h2>" not in task_page(detail(), NOW)  # no figures read: no section


def test_every_table_has_a_caption_column_scopes_and_a_box_a_keyboard_scrolls():
    """For a screen reader (a table says what it is, each header which cells it heads) and a
    keyboard (a wide table scrolls inside its box, which takes the focus)."""
    again = [dict(records()[0], wall=200.0, supervisor_pid=4100), *records()[1:3]]
    d = detail(recs=records() + again, alive=False, leftovers=[Leftover(4242, "web", 0, "sleep")])
    text = task_page(d, NOW) + tasks_page([TaskSummary(row=row_of("t-1", 100.0), ports={})], NOW, "/r")
    tables = text.count("<table>")
    assert tables >= 6 and text.count('<caption class="vh">') == tables
    assert text.count('<div class="scroll" tabindex="0" role="region" aria-label="') == tables
    assert "<th>" not in text and "<th " not in text.replace('<th scope="col"', "")


def test_a_log_page_names_its_task_in_its_title_and_its_two_pagers_apart():
    text = log_page(chunk(), follow=True)
    title = re.search(r"<title>(.*?)</title>", text).group(1)
    assert "web run 2 stdout" in title and "t-1" in title
    labels = re.findall(r'<nav class="pager" aria-label="([^"]+)"', text)
    assert len(labels) == 2 and len(set(labels)) == 2


def test_every_page_starts_with_a_skip_link_to_its_content():
    for text in (task_page(detail(), NOW), log_page(chunk(), follow=False), tasks_page([], NOW, "/r")):
        body = text.split("<body>", 1)[1]
        assert body.startswith('<header><a class="skip" href="#main">')
        assert '<main id="main">' in body


def test_following_stops_once_the_task_is_over_and_its_latest_log_is_shown_to_its_end():
    """A followed log reloaded every 2 s (and its script asked every second) for as long as
    the tab stayed open, long after the task had ended. Once the task's supervisor let go
    or is gone and the page shows the latest run's log to its end, it says so and neither
    reloads nor loads the script; before then it goes on."""
    over = log_page(chunk(over=True), follow=True)
    assert "http-equiv" not in over and "follow.js" not in over and 'data-follow="0"' in over
    assert "not following: the task is over, so nothing more is written to this log" in over
    for going_on in (chunk(), chunk(over=True, end=3), chunk(over=True, rotated=True), chunk(over=True, run=1)):
        text = log_page(going_on, follow=True)
        assert '<meta http-equiv="refresh" content="2;' in text and "follow.js" in text, going_on
    assert chunk(over=True).to_json()["over"] is True


def test_every_link_names_the_task_s_supervisor_when_it_is_known():
    """A task id two running tasks share (two frameworks') names neither: each of the
    observer's links carries the supervisor (`supervisor=PID-START`) of the task it was
    written for, through its page, its logs, follow mode and the script's API address."""
    listed = tasks_page([TaskSummary(row(entry(), detail().inspection), {}, "4000-1")], NOW, "/r")
    assert 'href="/tasks/t-1?supervisor=4000-1"' in listed
    assert 'href="/api/tasks/t-1?supervisor=4000-1"' in listed
    text = task_page(attrs.evolve(detail(), supervisor="4000-1"), NOW)
    assert "/tasks/t-1/processes/web/logs?run=0&amp;stream=stdout&amp;supervisor=4000-1" in text
    assert 'href="/api/tasks/t-1?supervisor=4000-1"' in text
    held = chunk(start=100, end=500, size=500, supervisor="4000-1")
    assert all("supervisor=4000-1" in refresh_url(c)
               for c in (held, attrs.evolve(held, start=0), attrs.evolve(held, rotated=True),
                         attrs.evolve(held, run=1, end=500)))
    page = log_page(held, follow=True)
    assert 'data-api="/api/tasks/t-1/processes/web/logs?stream=stdout&amp;length=' in page
    api = re.search(r'data-api="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert api.endswith("&amp;supervisor=4000-1")
    hrefs = re.findall(r'href="(/tasks/[^"]+)"', page)
    assert hrefs and all("supervisor=4000-1" in h for h in hrefs), hrefs


def test_the_page_of_an_id_two_running_tasks_share_links_each_and_escapes_them():
    from executor.observe.model import Choice
    from executor.observe.pages import choices_page

    choices = [Choice(EVIL, "4000-1", 4000, "c/r/e/a", "/sb/a", 100.0, url="/tasks/x?supervisor=4000-1"),
               Choice(EVIL, "5000-2", 5000, "c/r/e/b", "/sb/b", 101.0, url="/tasks/x?supervisor=5000-2")]
    text = choices_page("task id 'x' is the id of 2 running tasks", choices)
    assert re.findall(r'href="(/tasks/[^"]+)"', text) == ["/tasks/x?supervisor=4000-1", "/tasks/x?supervisor=5000-2"]
    assert "/sb/a" in text and "c/r/e/b" in text and no_markup_from(text)


def test_every_task_state_but_new_has_a_colour():
    """The pages colour a state by its `s-NAME` class: GONE had none, shown as NEW is (plain)."""
    from executor.observe.assets import STYLE
    from executor.observe.metrics import TASK_STATES

    coloured = set(re.findall(r"\.s-(\w+)", STYLE))
    assert set(TASK_STATES) - {"NEW"} <= coloured, set(TASK_STATES) - coloured
