"""The observer's pages read whole, block by block (`tests/support/pagetext.page_lines`):
every heading, sentence, column and cell an operator meets on a task's page, the tasks list
and the page of an id two tasks share, in order. Pure: views built in memory, no server."""
from __future__ import annotations

from pathlib import Path

import attrs

from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.truth import judge
from executor.observe.model import SINCE_LAST_LOOK, SINCE_START, Choice, TaskDetail, TaskSummary, Usage
from executor.observe.pages import choices_page, task_page, tasks_page
from executor.task.inspection import Inspection
from executor.task.inspectionjson import row
from executor.task.leftoverprocs import Foreign, Leftover
from executor.task.replay import replay
from executor.task.taskview import (
    AnnouncementView,
    HealthAttemptView,
    HealthView,
    ProcessView,
    RunView,
    TransitionView,
)
from executor.task.usagefigures import Live, UsageRecord, figures
from tests.support.pagetext import page_lines, title_and_where

NOW = 10_000.0
T0 = "1970-01-01T02:46:40+00:00"  # 10,000 s after the epoch: NOW
HEADER = {"kind": "header", "wall": 9000.0, "task": "web.0", "job_key": "c/r/e/web", "task_id": "t-9",
          "sandbox": "/sb", "ports": {"http": 31000, "admin": 31001}, "supervisor_pid": 4000,
          "processes": ["web", "db", "setup"], "health": "HTTP GET http://localhost:31000/health"}


def _records(supervisor: int = 4000, wall: float = 9000.0) -> list[dict]:
    return [dict(HEADER, wall=wall, supervisor_pid=supervisor),
            {"kind": "task", "wall": wall, "to": "STARTING", "reason": "task launched"},
            {"kind": "task", "wall": wall + 60, "from": "STARTING", "to": "RUNNING", "reason": "healthy"}]


def _entry(ended: float | None = None) -> RegistryEntry:
    return RegistryEntry(sandbox="/sb", supervisor_pid=4000, supervisor_start=1, supervisor_boot="b",
                         front_end=FrontEnd.RUN, registered_wall=9000.0, task_id="t-9",
                         job_key="c/r/e/web", ended_wall=ended)


def _runs() -> tuple[RunView, ...]:
    return (RunView(2, 4101, "FAILED", 9100.0, 9160.0, 3, None, "exited 3"),
            RunView(3, None, "LOST", 9200.0, 9200.5, None, None, "could not start"),
            RunView(4, 4103, "RUNNING", 9300.0, None, None, None, "restarted"))


def _processes() -> tuple[ProcessView, ...]:
    return (ProcessView("web", "RUNNING", "restarted", _runs(), earlier_runs=2),
            ProcessView("db", "FAILED", "failed 1 of 1", (RunView(0, 4200, "FAILED", 9000.5, 9001.0, None, 9, "killed"),)),
            ProcessView("setup", "WAITING", "waits for db", ()))


def _health() -> HealthView:
    return HealthView("HTTP GET http://localhost:31000/health", "HEALTHY", 7, 0, 5,
                      (HealthAttemptView(9990.0, "failed", "HTTP 500", 0.0125),
                       HealthAttemptView(9995.0, "timed out", "no answer in 1 s", None)))


def _full_detail(alive: bool = True, **kw) -> TaskDetail:
    view = replay(_records(4100, 8000.0) + _records())
    attempt = attrs.evolve(view.current, processes=_processes(), health=_health(),
                           phases=(TransitionView(9000.0, "", "ACTIVE", "started"),))
    view = attrs.evolve(view, attempts=(*view.attempts[:-1], attempt), warnings=("a torn record skipped",))
    truth = judge(view.state, alive, last_record_wall=9060.0, checkpoint_mtime=None, registry_wall=None)
    insp = Inspection(sandbox=Path("/sb"), view=view, attempt=attempt, truth=truth, **kw)
    usage = {"web": Usage(pid=4103, processes=3, rss_bytes=3 * 1024 * 1024, cpu_percent=12.25,
                          cpu_basis=SINCE_LAST_LOOK, started_wall=9300.0, stopped=True)}
    return TaskDetail(row=row(_entry(), insp), inspection=insp, usage=usage, status={},
                      definition={"task": {"processes": [
                          {"name": "web", "cmdline": "serve", "daemon": True, "max_failures": 0, "min_duration_secs": 5},
                          {"name": "tidy", "cmdline": "rm -f x", "ephemeral": True, "final": True}, "not a process"]}},
                      definition_problem="", supervisor="4000-1")


LOGS = '<"/tasks/t-9/processes/{p}/logs?run={r}&stream=stdout&supervisor=4000-1"> ' \
       'stderr<"/tasks/t-9/processes/{p}/logs?run={r}&stream=stderr&supervisor=4000-1">'


def _logs(process: str, run: int) -> str:
    return "stdout" + LOGS.format(p=process, r=run)


def test_a_live_task_s_page_reads_from_its_facts_to_its_definition():
    lines = page_lines(task_page(_full_detail(), NOW))
    assert lines[:4] == ["h1 t-9", 'p.muted json<"/api/tasks/t-9?supervisor=4000-1">',
                         "dl job key=c/r/e/web | state=[RUNNING] | reason=healthy | supervisor=4000 (running, "
                         "stoker run) | supervisor phase=ACTIVE: started | started=1970-01-01T02:30:00+00:00 "
                         "(16m40s ago) | uptime=16m40s | attempt=2 | ports=admin=31001 http=31000 | "
                         "health=[HEALTHY] | sandbox=/sb",
                         "p.note a torn record skipped"]
    assert lines[4:8] == [
        "h2 Processes (3)",
        "table Processes: process | state | run# | pid# | exit | failures | restarts | started | time | "
        "CPU %# | RSS# | procs# | logs | reason",
        f"  web | [RUNNING] (stopped) | 4# | 4103# | - | 1 (of the last 3 runs) | 4 | 1970-01-01T02:35:00+00:00 | "
        f"up 11m40s | 12.2# | 3.0 MiB# | 3# | {_logs('web', 4)} | restarted~",
        f"  db | [FAILED] | 0# | 4200# | signal 9 | 1 | 0 | 1970-01-01T02:30:00+00:00 | ran 0.5s | -# | -# | -# | "
        f"{_logs('db', 0)} | failed 1 of 1~"]
    assert lines[8:10] == ["  setup | [WAITING] | -# | -# | - | 0 | 0 | - | - | -# | -# | -# | - | waits for db~",
                           "p.muted CPU % is per cent of one core (100 = one core busy), since the previous look."]


def test_a_live_task_s_earlier_runs_health_and_changes_read_newest_first():
    lines = page_lines(task_page(_full_detail(), NOW))
    at = lines.index("h2 Earlier runs")
    assert lines[at:at + 6] == [
        "h2 Earlier runs", "details web: 3 runs (2 earlier runs not kept)",
        "table Runs of web: run# | pid# | state | started | ended | exit | logs | reason",
        f"  4# | 4103# | [RUNNING] | 1970-01-01T02:35:00+00:00 | - | - | {_logs('web', 4)} | restarted~",
        f"  3# | -# | [LOST] | 1970-01-01T02:33:20+00:00 | 1970-01-01T02:33:20+00:00 | - | {_logs('web', 3)} | "
        "could not start~",
        f"  2# | 4101# | [FAILED] | 1970-01-01T02:31:40+00:00 | 1970-01-01T02:32:40+00:00 | exit 3 | "
        f"{_logs('web', 2)} | exited 3~"]
    at = lines.index("h2 Health")
    assert lines[at:at + 6] == [
        "h2 Health", "dl check=HTTP GET http://localhost:31000/health | state=[HEALTHY] | attempts=7 | "
        "consecutive=0 failures, 5 successes",
        "h3 Last 2 attempts", "table Last health check attempts: time | outcome | latency# | reason",
        "  1970-01-01T02:46:35+00:00 | [timed out] | -# | no answer in 1 s~",
        "  1970-01-01T02:46:30+00:00 | [failed] | 12.5 ms# | HTTP 500~"]
    assert lines[at + 6:at + 15] == [
        "h2 Status updates (the task's states)", "table Status updates (the task's states): time | from | to | reason",
        "  1970-01-01T02:31:00+00:00 | [STARTING] | [RUNNING] | healthy~",
        "  1970-01-01T02:30:00+00:00 | [-|s-other] | [STARTING] | task launched~",
        "h2 Supervisor phases", "table Supervisor phases: time | from | to | reason",
        "  1970-01-01T02:30:00+00:00 | [-|s-other] | [ACTIVE] | started~",
        "h2 Earlier attempts", "table Earlier attempts: attempt | state | started | reason"]
    assert lines[at + 15] == "  1 | [LOST (recorded RUNNING)|s-LOST] | 1970-01-01T02:13:20+00:00 | healthy~"


def test_a_task_s_definition_lists_its_processes_flags_and_the_whole_document():
    lines = page_lines(task_page(_full_detail(), NOW))
    at = lines.index("h2 Definition")
    assert lines[at:at + 5] == [
        "h2 Definition", "p.muted The bound task as it runs (templates expanded, defaults applied).",
        "table Definition: process | flags | command",
        "  web | daemon max_failures=0 min_duration=5 | {serve}~",
        "  tidy | ephemeral final max_failures=None min_duration=None | {rm -f x}~"]
    assert lines[at + 5] == "details the whole definition (JSON)"
    assert lines[at + 6].startswith('pre {\\n  "task": {\\n    "processes": [\\n      {\\n        "cmdline": "serve",')
    assert lines[at + 6].endswith('\\n      "not a process"\\n    ]\\n  }\\n}') and len(lines) == at + 7
    gone = attrs.evolve(_full_detail(), definition=None, definition_problem="its task.json is not there")
    assert page_lines(task_page(gone, NOW))[-2:] == ["h2 Definition", "p.muted its task.json is not there"]
    for odd in ({"task": {"processes": "none"}}, {"task": 3}):  # no process listed, the document whole
        lines = page_lines(task_page(attrs.evolve(_full_detail(), definition=odd), NOW))
        assert lines[-3:-1] == ["table Definition: process | flags | command", "details the whole definition (JSON)"]


def test_the_use_against_the_reservation_reads_as_three_rows_with_their_notes():
    record = UsageRecord(cpu=0.5, ram_bytes=64 * 1024 * 1024, disk_bytes=8 * 1024 * 1024, check_secs=None)
    d = attrs.evolve(_full_detail(), figures=figures(record, "", Live(0.25, 16 * 1024 * 1024, basis=SINCE_START)))
    lines = page_lines(task_page(d, NOW))
    at = lines.index("h2 Resources")
    assert lines[at:at + 5] == [
        "h2 Resources", "table Resources: resource | used# | reserved# | %# | note",
        "  cpu | 0.25# | 0.50# | 50%# | cores; average since the run started~",
        "  ram | 16.0 MiB# | 64.0 MiB# | 25%# | ~",
        "  disk | -# | 8.0 MiB# | -# | not sampled: the disk-limit check is off for this task (--disk-limit on "
        "turns it on)~"]


def _section(lines: list[str], heading: str, until: str) -> list[str]:
    return lines[lines.index(heading):lines.index(until)]


def test_a_lost_task_s_leftovers_and_other_users_processes_read_apart():
    left = (Leftover(4242, "web", 4, "sleep 1000"), Leftover(4243, "", None, "sh -c x"))
    d = _full_detail(alive=False, leftovers=left, foreign=(Foreign(5000, "bob (uid 1001)", "nc -l"),))
    lines = page_lines(task_page(d, NOW))
    assert _section(lines, "h2 Leftover processes", "h2 Health") == [
        "h2 Leftover processes", "p They carry the task's marker; its supervisor is gone.",
        "table Leftover processes: pid# | process | run | command", "  4242# | web | 4 | sleep 1000~",
        "  4243# | - | - | sh -c x~", "h2 Other users' processes carrying its marker",
        "p Not counted as its leftovers: the marker is anyone's to copy, and a root task's process may "
        "have changed user.", "table Other users' processes carrying its marker: pid# | user | command",
        "  5000# | bob (uid 1001) | nc -l~"]
    assert "  web | [LOST] (stopped) | 4# | 4103# | - | 1 (of the last 3 runs) | 4 | 1970-01-01T02:35:00+00:00 " \
           "| - | 12.2# |" in "\n".join(lines)  # its live run LOST, with no uptime
    assert "dl check=HTTP GET http://localhost:31000/health | state=[was:HEALTHY|s-other] |" in "\n".join(lines)
    none_left = page_lines(task_page(_full_detail(alive=False), NOW))
    assert _section(none_left, "h2 Leftover processes", "h2 Health") == [
        "h2 Leftover processes", "p None: nothing of the task's user carries its marker."]
    assert "h2 Leftover processes" not in page_lines(task_page(_full_detail(leftovers=left), NOW))


def _facts_of(d: TaskDetail) -> list[str]:
    return page_lines(task_page(d, NOW))[2].split(" | ")


def test_a_lost_task_s_state_says_since_when_who_took_its_sandbox_and_the_next_attempt():
    d = _full_detail(alive=False)
    insp = attrs.evolve(d.inspection, truth=attrs.evolve(d.inspection.truth, replaced_by="t-10"))
    d = attrs.evolve(d, inspection=insp, row=dict(row(_entry(), insp), restart={
        "attempt": 3, "after_state": "FAILED", "due": NOW + 5}))
    assert _facts_of(d)[1:4] == [
        "state=[LOST] (supervisor gone since 1970-01-01T02:31:00+00:00 (15m40s ago), its checkpoint's last "
        "record; replaced by t-10 in the same sandbox); recorded RUNNING (attempt 2 ended FAILED; attempt 3 "
        "starts in 5.0s)", "reason=healthy", "supervisor=4000 (gone, stoker run)"]
    assert _facts_of(d)[6] == "uptime=-"  # LOST: no uptime
    unrecorded = attrs.evolve(d, row=dict(d.row, recorded_state=None, restart=None))
    assert _facts_of(unrecorded)[1].endswith("record; replaced by t-10 in the same sandbox); recorded nothing")


def test_a_supervisor_that_died_killing_is_stopped_or_frozen_says_so_in_the_facts():
    recs = [*_records(), {"kind": "task", "wall": 9500.0, "from": "RUNNING", "to": "KILLING",
                          "reason": "killed by the operator", "ends_as": "KILLED"}]
    view = replay(recs)
    truth = judge(view.state, False, last_record_wall=9500.0, checkpoint_mtime=None, registry_wall=None,
                  killing_ends_as=view.current.killing_ends_as)
    insp = Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth)
    killing = attrs.evolve(_full_detail(), row=row(_entry(), insp), inspection=insp)
    assert _facts_of(killing)[1:4] == ["state=[KILLED] (its supervisor died while killing; recorded KILLING)",
                                       "reason=killed by the operator", "supervisor=4000 (gone, stoker run)"]
    stopped = attrs.evolve(_full_detail(), supervisor_stopped=True, supervisor_frozen="/sys/fs/cgroup/x")
    assert _facts_of(stopped)[3] == ("supervisor=4000 (stopped: SIGSTOP or a debugger; nothing is supervised "
                                     "until it is continued, kill -CONT 4000, stoker run)")
    frozen = attrs.evolve(_full_detail(), supervisor_frozen="/sys/fs/cgroup/x")
    assert _facts_of(frozen)[3] == ("supervisor=4000 (frozen: its cgroup /sys/fs/cgroup/x is frozen; nothing is "
                                    "supervised until it is thawed, stoker run)")


def test_the_announcement_notes_and_problems_read_in_their_places():
    d = _full_detail()
    attempt = attrs.evolve(d.inspection.attempt, processes_not_shown=3, announcement=AnnouncementView(
        path="/aurora/r/e/web", member=None, state="JOINING", connection="SUSPENDED", reason="waits for health",
        since_wall=None))
    insp = attrs.evolve(d.inspection, attempt=attempt, problem="the checkpoint's last line is torn")
    lines = page_lines(task_page(attrs.evolve(d, inspection=insp), NOW))
    assert lines[3:8] == ["p.note the checkpoint's last line is torn", "p.note a torn record skipped",
                          "h2 Service discovery", "dl serverset=/aurora/r/e/web | member=none yet | state=[JOINING] "
                          "| since=- | ZooKeeper=SUSPENDED | reason=waits for health", "h2 Processes (6)"]
    assert lines[12:14] == [
        "p.muted CPU % is per cent of one core (100 = one core busy), since the previous look.",
        "p.note 3 more processes of the task not shown: a task's view keeps its first 3"]
    joined = attrs.evolve(attempt.announcement, member="member_0000000003", state="JOINED", since_wall=NOW - 65)
    insp = attrs.evolve(insp, attempt=attrs.evolve(attempt, announcement=joined))
    assert page_lines(task_page(attrs.evolve(d, inspection=insp), NOW))[6] == (
        "dl serverset=/aurora/r/e/web | member=/aurora/r/e/web/member_0000000003 | state=[JOINED] | "
        "since=1970-01-01T02:45:35+00:00 (1m05s ago) | ZooKeeper=SUSPENDED | reason=waits for health")


def test_a_task_with_no_attempt_of_its_supervisor_s_reads_its_earlier_attempts_only():
    d = _full_detail()
    for after_latest, attempts in ((True, ["2", "1"]), (False, ["1"])):  # a new id's pending attempt: all before it
        insp = attrs.evolve(d.inspection, attempt=None, after_latest=after_latest)
        lines = page_lines(task_page(attrs.evolve(d, inspection=insp, row=row(_entry(), insp)), NOW))
        assert _facts_of(attrs.evolve(d, inspection=insp, row=row(_entry(), insp))) == [
            "dl job key=c/r/e/web", "state=[RUNNING]", "reason=-", "supervisor=4000 (running, stoker run)",
            "started=1970-01-01T02:30:00+00:00 (16m40s ago)", "uptime=16m40s", "attempt=-",
            "ports=admin=31001 http=31000", "health=[-|s-other]", "sandbox=/sb"]
        assert lines[3:6] == ["p.note a torn record skipped", "h2 Earlier attempts",
                              "table Earlier attempts: attempt | state | started | reason"]
        assert [line.split(" | ")[0].strip() for line in lines[6:6 + len(attempts)]] == attempts
        assert lines[6 + len(attempts)] == "h2 Definition"


def test_a_task_s_health_with_no_check_or_no_attempt_yet_says_which():
    d = _full_detail()

    def health(view: HealthView) -> list[str]:
        insp = attrs.evolve(d.inspection, attempt=attrs.evolve(d.inspection.attempt, health=view))
        lines = page_lines(task_page(attrs.evolve(d, inspection=insp), NOW))
        return _section(lines, "h2 Health", "h2 Status updates (the task's states)")

    assert health(HealthView("none", None, 0, 0, 0, ())) == ["h2 Health", "p No health check configured."]
    assert health(HealthView("shell: true", None, 0, 0, 0, ())) == [
        "h2 Health", "dl check=shell: true | state=[no attempt yet] | attempts=0 | consecutive=0 failures, "
        "0 successes", "h3 Last 0 attempts", "p No attempt yet."]
    assert health(HealthView("none", "HEALTHY", 1, 0, 1, ()))[1] == (
        "dl check=none | state=[HEALTHY] | attempts=1 | consecutive=0 failures, 1 successes")


def test_the_cpu_note_names_the_processes_when_their_bases_differ():
    d = _full_detail()
    usage = {"web": d.usage["web"], "db": attrs.evolve(d.usage["web"], pid=4200, cpu_basis=SINCE_START),
             "setup": attrs.evolve(d.usage["web"], cpu_percent=None, cpu_basis="unmeasured")}
    lines = page_lines(task_page(attrs.evolve(d, usage=usage), NOW))
    assert lines[9] == ("p.muted CPU % is per cent of one core (100 = one core busy), average since the run "
                        "started for db; since the previous look for web.")
    assert lines[8] == "  setup | [WAITING] (stopped) | -# | -# | - | 0 | 0 | - | - | -# | 3.0 MiB# | 3# | - | waits for db~"
    assert lines[10] == "h2 Earlier runs"
    unmeasured = page_lines(task_page(attrs.evolve(d, usage={}), NOW))
    assert unmeasured[9:11] == ["h2 Earlier runs", "details web: 3 runs (2 earlier runs not kept)"]


def test_the_tasks_list_reads_live_first_then_ended_with_its_notes_below():
    d = _full_detail()
    live = TaskSummary(d.row, {"http": 31000, "admin": 31001}, "4000-1")
    ended = TaskSummary(dict(d.row, task_id="t-8", ended=True, state="FINISHED", started=8000.0, job_key=""), {})
    lost = TaskSummary(dict(d.row, task_id="t-7", state="LOST", started=9500.0), {})
    unnamed = TaskSummary(dict(d.row, task_id="", started=9600.0), {})
    text = tasks_page([ended, live, lost, unnamed], NOW, "/var/run/stoker", ["a.json", "b.json"],
                      "shown to alice only", "2 tasks of other hosts are in the registry", ["x.tmp"])
    assert page_lines(text) == [
        "h1 Tasks on this host", "p.muted 3 live, 1 ended (kept by the registry's retention).",
        "p.note shown to alice only",
        "table Tasks: task | job key | state | started | uptime | health | running | ports | links",
        "  - | c/r/e/web | [RUNNING] | 1970-01-01T02:40:00+00:00 | 6m40s | [HEALTHY] | 1/3 | - | ",
        '  t-7<"/tasks/t-7"> | c/r/e/web | [LOST] | 1970-01-01T02:38:20+00:00 | - | [HEALTHY] | 1/3 | - | '
        'json<"/api/tasks/t-7">',
        '  t-9<"/tasks/t-9?supervisor=4000-1"> | c/r/e/web | [RUNNING] | 1970-01-01T02:30:00+00:00 | 16m40s | '
        '[HEALTHY] | 1/3 | admin=31001 http=31000 | json<"/api/tasks/t-9?supervisor=4000-1">',
        '  t-8<"/tasks/t-8"> | - | [FINISHED] | 1970-01-01T02:13:20+00:00 | - | [HEALTHY] | 1/3 | - | '
        'json<"/api/tasks/t-8">',
        "p Not listed: 2 entries of the registry this version of Stoker does not read (another version's, "
        "or damaged), whose supervisor runs: a.json, b.json.",
        "p 2 tasks of other hosts are in the registry.",
        "p 1 file in the registry /var/run/stoker is not a task it reads (put there by hand, not JSON, a field "
        "missing; a damaged entry goes once older than the retention, anything else stays): the first is "
        "/var/run/stoker/x.tmp."]
    assert title_and_where(text) == ("Tasks on this host · stoker observe", "registry /var/run/stoker")
    assert page_lines(tasks_page([], NOW, "/r", ["a.json"])) == [
        "h1 Tasks on this host", "p.muted 0 live, 0 ended (kept by the registry's retention).",
        "p No task in the registry /r.", "p Not listed: 1 entry of the registry this version of Stoker does "
        "not read (another version's, or damaged), whose supervisor runs: a.json."]


def test_a_task_s_uptime_is_a_dash_once_it_is_not_running_under_its_supervisor():
    d = _full_detail()
    for shown in ("LOST", "RESTARTING", "GONE", "UNKNOWN"):
        assert _facts_of(attrs.evolve(d, row=dict(d.row, state=shown)))[6] == "uptime=-", shown
    assert _facts_of(attrs.evolve(d, row=dict(d.row, started=None)))[5:7] == ["started=-", "uptime=-"]
    assert _facts_of(attrs.evolve(d, row=dict(d.row, ended=True)))[6] == "uptime=-"
    assert title_and_where(task_page(d, NOW)) == ("t-9 · stoker observe", "c/r/e/web")
    unnamed = attrs.evolve(d, row=dict(d.row, task_id="", job_key=""))
    assert title_and_where(task_page(unnamed, NOW)) == ("task · stoker observe", "")


def test_the_page_of_an_id_two_running_tasks_share_reads_each_by_its_supervisor():
    choices = [Choice("t-9", "4000-1", 4000, "c/r/e/a", "/sb/a", 9000.0, url="/tasks/t-9?supervisor=4000-1"),
               Choice("t-9", "5000-2", 5000, "", "/sb/b", 9001.0, url="/tasks/t-9?supervisor=5000-2")]
    text = choices_page("task id 't-9' is the id of 2 running tasks", choices)
    assert page_lines(text) == [
        "h1 Two or more running tasks have this id",
        "p task id 't-9' is the id of 2 running tasks. Each is linked below, named by its supervisor (its pid "
        "and start).", "table Tasks with this id: task | job key | supervisor# | registered | sandbox",
        '  t-9<"/tasks/t-9?supervisor=4000-1"> | c/r/e/a | 4000# | 1970-01-01T02:30:00+00:00 | /sb/a~',
        '  t-9<"/tasks/t-9?supervisor=5000-2"> | - | 5000# | 1970-01-01T02:30:01+00:00 | /sb/b~']
    assert title_and_where(text) == ("Tasks with this id · stoker observe", "")


def _with_processes(d: TaskDetail, *processes: ProcessView, **attempt_fields) -> TaskDetail:
    attempt = attrs.evolve(d.inspection.attempt, processes=processes, **attempt_fields)
    return attrs.evolve(d, inspection=attrs.evolve(d.inspection, attempt=attempt))


def test_earlier_runs_are_shown_for_a_process_with_two_runs_or_runs_not_kept_and_no_other():
    once = ProcessView("db", "FAILED", "failed", (RunView(0, 4200, "FAILED", 9000.5, 9001.0, 1, None, "exit 1"),))
    twice = ProcessView("cron", "SUCCESS", "done", (RunView(0, 4300, "SUCCESS", 9000.0, 9001.0, 0, None, "done"),
                                                    RunView(1, 4301, "SUCCESS", 9500.0, 9502.0, 0, None, "done")))
    lines = page_lines(task_page(_with_processes(_full_detail(), once, twice), NOW))
    assert _section(lines, "h2 Earlier runs", "h2 Health") == [
        "h2 Earlier runs", "details cron: 2 runs",
        "table Runs of cron: run# | pid# | state | started | ended | exit | logs | reason",
        f"  1# | 4301# | [SUCCESS] | 1970-01-01T02:38:20+00:00 | 1970-01-01T02:38:22+00:00 | exit 0 | "
        f"{_logs('cron', 1)} | done~",
        f"  0# | 4300# | [SUCCESS] | 1970-01-01T02:30:00+00:00 | 1970-01-01T02:30:01+00:00 | exit 0 | "
        f"{_logs('cron', 0)} | done~"]
    both = _section(page_lines(task_page(_with_processes(_full_detail(), _processes()[0], once, twice), NOW)),
                    "h2 Earlier runs", "h2 Health")
    assert [line for line in both if not line.startswith(("  ", "table "))] == [
        "h2 Earlier runs", "details web: 3 runs (2 earlier runs not kept)", "details cron: 2 runs"]
    alone = page_lines(task_page(_with_processes(_full_detail(), once), NOW))
    assert alone[alone.index("h2 Processes (1)") + 3:alone.index("h2 Processes (1)") + 5] == [
        "h2 Health", "dl check=HTTP GET http://localhost:31000/health | state=[HEALTHY] | attempts=7 | "
        "consecutive=0 failures, 5 successes"]  # no earlier runs: no heading, no CPU note


def test_the_cpu_note_lists_each_basis_s_processes_together():
    d = _full_detail()
    usage = {name: attrs.evolve(d.usage["web"], cpu_basis=SINCE_START if name == "db" else SINCE_LAST_LOOK)
             for name in ("web", "db", "setup")}
    lines = page_lines(task_page(attrs.evolve(d, usage=usage), NOW))
    assert lines[9] == ("p.muted CPU % is per cent of one core (100 = one core busy), average since the run "
                        "started for db; since the previous look for web, setup.")


def test_a_latency_an_empty_history_and_a_lost_task_s_unknown_since_read_as_such():
    d = _full_detail()
    attempt = attrs.evolve(d.inspection.attempt, phases=(), health=attrs.evolve(
        _health(), last_attempts=(HealthAttemptView(9990.0, "ok", "HTTP 200", 0.0996),)))
    lines = page_lines(task_page(_with_processes(d, *attempt.processes, phases=(), health=attempt.health), NOW))
    assert "  1970-01-01T02:46:30+00:00 | [ok] | 99.6 ms# | HTTP 200~" in lines
    assert _section(lines, "h2 Supervisor phases", "h2 Earlier attempts") == ["h2 Supervisor phases",
                                                                             "p None recorded."]
    lost = _full_detail(alive=False)
    lost = attrs.evolve(lost, inspection=attrs.evolve(lost.inspection, truth=attrs.evolve(
        lost.inspection.truth, since=None, since_wall=None)), row=dict(lost.row, job_key=""))
    assert _facts_of(lost)[:2] == ["dl job key=-", "state=[LOST] (supervisor gone since -, no record); "
                                                   "recorded RUNNING"]


def test_a_pending_attempt_s_page_lists_every_attempt_before_it_and_a_latest_one_s_all_but_it():
    view = replay(_records(4200, 7000.0) + _records(4100, 8000.0) + _records())
    truth = judge(view.state, True, last_record_wall=9060.0, checkpoint_mtime=None, registry_wall=None)
    for after_latest, numbers in ((True, ["3", "2", "1"]), (False, ["2", "1"])):
        insp = Inspection(sandbox=Path("/sb"), view=view, attempt=None, truth=truth, after_latest=after_latest)
        d = attrs.evolve(_full_detail(), row=row(_entry(), insp), inspection=insp)
        lines = page_lines(task_page(d, NOW))
        shown = _section(lines, "h2 Earlier attempts", "h2 Definition")[2:]
        assert [line.split(" | ")[0].strip() for line in shown] == numbers


def test_the_disk_sample_s_age_is_from_now():
    from executor.task.usagefigures import DiskSample

    sample = DiskSample(used_bytes=2 * 1024 * 1024, wall=NOW - 90, secs=0.25, files=3)
    record = UsageRecord(cpu=None, ram_bytes=None, disk_bytes=8 * 1024 * 1024, check_secs=60.0, sample=sample)
    d = attrs.evolve(_full_detail(), figures=figures(record, "", Live(None, None, note="not measured")))
    lines = page_lines(task_page(d, NOW))
    assert _section(lines, "h2 Resources", "h2 Earlier runs")[-1] == (
        "  disk | 2.0 MiB# | 8.0 MiB# | 25%# | sampled 1m30s ago, took 250 ms~")
