"""The host registry's entries and the truth about a task (executor/host/entry.py, executor/host/truth.py): tables,
no files, no /proc."""
from __future__ import annotations

import json
import math

import attrs
import pytest

from executor.host.entry import (
    ENTRY_NAME,
    FrontEnd,
    RegistryEntry,
    claims_name,
    entry_name,
    expired,
    first_taker,
    later_ids,
    registered_after,
)
from executor.host.truth import GONE, SinceSource, Truth, gone, judge

pytestmark = pytest.mark.timeout(30)

ENTRY = RegistryEntry(sandbox="/sb/hello", supervisor_pid=4242, supervisor_start=123456,
                      supervisor_boot="b00t", front_end=FrontEnd.RUN, registered_wall=1000.0,
                      task_id="hello-0-ab12", job_key="c/r/e/hello", label="hello.0",
                      marker="m4rk3r", ended_wall=None)


def test_an_entry_round_trips_through_json_and_is_named_after_its_supervisor():
    doc = json.loads(json.dumps(ENTRY.to_json()))
    assert RegistryEntry.from_json(doc) == ENTRY
    assert ENTRY.name == entry_name(4242, 123456) == "4242-123456.json"
    assert ENTRY_NAME.match(ENTRY.name)


def test_the_ids_of_the_supervisors_that_took_a_sandbox_after_an_entry_s():
    """Whose task.json may have been written over the entry's: later in the same `.stoker`
    (or at the same path where either pinned none), not itself, not another sandbox's."""
    me = attrs.evolve(ENTRY, stoker_dir="2049:7")
    after = attrs.evolve(me, supervisor_pid=5000, registered_wall=2000.0, task_id="hello-0-cd34",
                         earlier_task_ids=("hello-0-ef56",))
    before = attrs.evolve(after, supervisor_pid=3000, registered_wall=500.0, task_id="hello-0-0001")
    moved = attrs.evolve(after, supervisor_pid=6000, stoker_dir="2049:8", task_id="hello-0-9999")  # another .stoker
    unpinned = attrs.evolve(after, supervisor_pid=7000, stoker_dir="", task_id="hello-0-7777")  # at the same path
    elsewhere = attrs.evolve(unpinned, supervisor_pid=8000, sandbox="/sb/other", task_id="hello-0-8888")
    restarted = attrs.evolve(me, registered_wall=3000.0, task_id="hello-0-2222")  # itself, read again
    assert later_ids([me, after, before, moved, unpinned, elsewhere, restarted], me) == {
        "hello-0-cd34", "hello-0-ef56", "hello-0-7777"}



@pytest.mark.parametrize(("start", "boot", "wall", "after"), [
    (123457, "b00t", 1000.0 - 3600, True),  # started later this boot; the wall clock stepped back between
    (123455, "b00t", 1000.0 + 3600, False),  # started earlier this boot; the wall clock stepped forward
    (123456, "b00t", 1001.0, True),  # the same start (another pid): by the wall clock
    (123456, "b00t", 1000.0, False),  # the same start and registration: neither came after the other
    (100, "b00t-2", 1001.0, True),  # another boot: by the wall clock
    (999999, "b00t-2", 999.0, False),
    (999999, "", 999.0, False),  # no boot recorded: by the wall clock
])
def test_which_supervisor_came_after_another_is_told_by_the_boot_s_clock_when_it_can(start, boot, wall, after):
    other = attrs.evolve(ENTRY, supervisor_pid=5000, supervisor_start=start, supervisor_boot=boot,
                         registered_wall=wall)
    assert registered_after(other, ENTRY) is after
    assert later_ids([ENTRY, attrs.evolve(other, task_id="hello-0-cd34")], ENTRY) == (
        {"hello-0-cd34"} if after else set())

@pytest.mark.parametrize(("host_id", "host_name", "of_here"), [
    ("", "", True),  # an older Stoker's entry: this host's, as it always was
    ("0f1e", "node-a", True),
    ("0f1e", "node-b", False),  # another container of the host (its machine id bind-mounted)
    ("9a8b", "node-a", False),  # another host of the same name
    ("", "node-a", False),  # written where no machine id could be read
])
def test_an_entry_is_this_host_s_by_its_machine_id_and_host_name(host_id, host_name, of_here):
    assert attrs.evolve(ENTRY, host_id=host_id, host_name=host_name).of_host(("0f1e", "node-a")) is of_here


def test_the_entry_file_format():
    ended = attrs.evolve(ENTRY, ended_wall=2000.5, stoker_dir="2049:1234", host_id="0f1e", host_name="node-a",
                         ended_state="FINISHED")
    assert ended.to_json() == {
        "version": 1, "sandbox": "/sb/hello", "supervisor_pid": 4242, "supervisor_start": 123456,
        "supervisor_boot": "b00t", "front_end": "run", "registered": 1000.0,
        "task_id": "hello-0-ab12", "job_key": "c/r/e/hello", "label": "hello.0", "marker": "m4rk3r",
        "ended": 2000.5, "stoker_dir": "2049:1234", "earlier_task_ids": [], "ended_reason": "",
        "ended_state": "FINISHED", "host_id": "0f1e", "host_name": "node-a",
    }
    assert RegistryEntry.from_json(json.loads(json.dumps(ended.to_json()))) == ended


@pytest.mark.parametrize("change, read", [
    ({"task_id": None, "job_key": None, "label": None, "marker": None},  # before the first task
     {"task_id": "", "job_key": "", "label": "", "marker": ""}),
    ({"supervisor_start": 0}, {"supervisor_start": 0}),
    ({"supervisor_pid": 1}, {"supervisor_pid": 1}),  # the first process of a PID namespace
    ({"registered": 7}, {"registered_wall": 7.0}),
    ({"ended": None}, {"ended_wall": None}),
    ({"stoker_dir": None}, {"stoker_dir": ""}),  # an entry written before .stoker was pinned
    ({"earlier_task_ids": None}, {"earlier_task_ids": ()}),  # written before attempts were kept
    ({"ended_reason": None}, {"ended_reason": ""}),  # written before an end's reason was kept
    ({"ended_reason": "cannot go on: x"}, {"ended_reason": "cannot go on: x"}),
    ({"ended_state": None}, {"ended_state": ""}),  # written before an end recorded was said
    ({"ended_state": "KILLED"}, {"ended_state": "KILLED"}),
    ({"host_id": None, "host_name": None}, {"host_id": "", "host_name": ""}),  # an older Stoker's: no host
    ({"sandbox": "/sb/caf\udce9"}, {"sandbox": "/sb/caf\udce9"}),  # a path whose bytes are no UTF-8, escaped
    ({"earlier_task_ids": [f"t-{n}" for n in range(25)]},
     {"earlier_task_ids": tuple(f"t-{n}" for n in range(5, 25))}),  # the latest 20
])
def test_an_entry_reads_with_what_its_fields_allow(change, read):
    assert RegistryEntry.from_json(dict(ENTRY.to_json(), **change)) == attrs.evolve(ENTRY, **read)


@pytest.mark.parametrize("key, field, empty", [
    ("task_id", "task_id", ""), ("job_key", "job_key", ""), ("label", "label", ""), ("marker", "marker", ""),
    ("supervisor_boot", "supervisor_boot", ""), ("ended", "ended_wall", None), ("stoker_dir", "stoker_dir", ""),
])
def test_an_entry_missing_an_optional_field_reads_it_as_empty(key, field, empty):
    doc = ENTRY.to_json()
    del doc[key]
    assert RegistryEntry.from_json(doc) == attrs.evolve(ENTRY, **{field: empty})


def test_an_entry_with_no_version_reads_as_this_format():
    """Only another version is another format: one that names none is read as this one."""
    doc = ENTRY.to_json()
    del doc["version"]
    assert RegistryEntry.from_json(doc) == ENTRY


def test_a_gone_task_is_ended_only_when_its_supervisor_let_go():
    let_go, vanished = gone(True), gone(False)
    assert (let_go.state, let_go.alive, let_go.ended) == (GONE, False, True)
    assert (vanished.state, vanished.alive, vanished.ended) == (GONE, False, False)
    assert vanished.unsupervised and not let_go.unsupervised  # its processes may live on


@pytest.mark.parametrize("name, ok", [
    ("4242-123456.json", True), ("1-0.json", True), ("0-1.json", False),
    ("4242-123456.json.tmp", False), (".4242-123456.json.ab.tmp", False), ("../x.json", False),
    ("4242.json", False), ("a-1.json", False), ("4242-123456.JSON", False),
    ("4242-123456.0f3ac7e2b1d94c55.json", True), ("4242-123456.b.json", True),  # a second name's tag
    ("4242-123456.0f3ac7e2b1d94c55a.json", False), ("4242-123456..json", False),  # 16 at most; none
    ("4242-123456.0F3A.json", False), ("4242-123456.0f-3.json", False), ("4242-123456.a.b.json", False),
])
def test_entry_file_names(name, ok):
    assert bool(ENTRY_NAME.match(name)) is ok


@pytest.mark.parametrize("boot, host_id, tag", [
    ("0f3ac7e2-b1d9-4c55-8e6a-93d1c0a5b7f2", "m4ch1ne", "0f3ac7e2b1d94c55"),  # the boot's first 16
    ("", "0123456789ABCDEF0123", "0123456789abcdef"),  # no boot read: the machine id's
    ("b00t", "m4ch1ne", "b00t"), ("", "", ""), ("--", "", ""), ("é-1", "", "1"),  # ASCII letters and digits only
])
def test_an_entry_s_second_name_is_tagged_with_its_boot(boot, host_id, tag):
    """Where its name is another supervisor's (another host's of the same pid and start, a
    root they share; an earlier boot's), an entry is written under its second name."""
    entry = attrs.evolve(ENTRY, supervisor_boot=boot, host_id=host_id)
    assert entry.tagged_name == (f"4242-123456.{tag}.json" if tag else "")
    assert entry.named("4242-123456.json") and entry.named(entry.tagged_name) is bool(tag)
    assert not entry.named("4242-123457.json") and not entry.named("") and not entry.named("4242-123456.x.json")
    assert entry.tagged_name == "" or ENTRY_NAME.match(entry.tagged_name)


def test_an_entry_s_supervisor_is_its_pid_start_boot_and_host():
    assert ENTRY.same_supervisor(attrs.evolve(ENTRY, task_id="later-0-1", ended_wall=2000.0, sandbox="/sb/x"))
    for change in ({"supervisor_pid": 4243}, {"supervisor_start": 123457}, {"supervisor_boot": "other"},
                   {"host_id": "another-machine"}):
        assert not ENTRY.same_supervisor(attrs.evolve(ENTRY, **change)), change


@pytest.mark.parametrize("change", [
    {"sandbox": "relative/path"}, {"sandbox": 7}, {"supervisor_pid": 0}, {"supervisor_pid": -3},
    {"supervisor_pid": 1.5}, {"supervisor_pid": True}, {"supervisor_start": "soon"}, {"supervisor_start": -1},
    {"front_end": "marathon"}, {"registered": math.inf}, {"registered": None},
    {"ended": "later"}, {"task_id": ["x"]}, {"earlier_task_ids": "t-1"}, {"earlier_task_ids": [1]},
    {"version": 2}, {"version": "1"},  # another format: a newer Stoker's, whose fields may mean other things
    # what no open() takes (ValueError from every reader, the registry's pruning first):
    {"sandbox": "/s/a\0b"}, {"sandbox": "/s/\ud800"}, {"stoker_dir": "1:2\0"},
    {"registered": 10 ** 400}, {"supervisor_start": 10 ** 400},  # no float holds it: OverflowError
])
def test_a_damaged_entry_reads_as_none(change):
    doc = dict(ENTRY.to_json(), **change)
    assert RegistryEntry.from_json(doc) is None


def test_a_task_id_a_restart_replaced_still_names_its_supervisor():
    """`stoker ps` showed hello-0-ab12; `stoker run` restarted the task (a new id) before the
    operator's `stoker kill hello-0-ab12`: "no task in the registry has that id"."""
    later = attrs.evolve(ENTRY, task_id="hello-0-cd34", earlier_task_ids=ENTRY.next_task("hello-0-cd34"))
    assert later.earlier_task_ids == ("hello-0-ab12",)
    assert later.known_as("hello-0-ab12") and later.known_as("hello-0-cd34")
    assert not later.known_as("hello-0-ef56") and not later.known_as("")
    assert later.next_task("hello-0-cd34") == ("hello-0-ab12",)  # the same task again: no change
    many = ENTRY
    for n in range(30):
        many = attrs.evolve(many, task_id=f"t-{n}", earlier_task_ids=many.next_task(f"t-{n}"))
    assert many.earlier_task_ids == tuple(f"t-{n}" for n in range(9, 29))


@pytest.mark.parametrize("doc", ["text", ["list"], None, 7])
def test_what_is_not_an_object_reads_as_none(doc):
    assert RegistryEntry.from_json(doc) is None


WALLS = {"last_record_wall": 50.0, "checkpoint_mtime": 60.0, "registry_wall": 10.0}

TRUTHS = {
    "a live supervisor's task is what it recorded": (
        "RUNNING", True, WALLS, False, Truth("RUNNING", alive=True, ended=False)),
    "a live supervisor without a task yet": (
        None, True, WALLS, False, Truth("NEW", alive=True, ended=False)),
    "a live supervisor between attempts shows the last end": (
        "FAILED", True, WALLS, False, Truth("FAILED", alive=True, ended=False)),
    "gone after a terminal record: ended": (
        "KILLED", False, WALLS, False, Truth("KILLED", alive=False, ended=True)),
    "gone without a terminal record: LOST since its last record": (
        "RUNNING", False, WALLS, False,
        Truth("LOST", alive=False, ended=False, since_wall=50.0, since=SinceSource.LAST_RECORD)),
    "gone while killing is LOST too": (
        "KILLING", False, WALLS, True,
        Truth("LOST", alive=False, ended=False, since_wall=50.0, since=SinceSource.LAST_RECORD)),
    "records without wall times: since the checkpoint's modification": (
        "STARTING", False, dict(WALLS, last_record_wall=None), False,
        Truth("LOST", alive=False, ended=False, since_wall=60.0, since=SinceSource.CHECKPOINT_MTIME)),
    "no checkpoint at all: since its registry entry": (
        None, False, {"last_record_wall": None, "checkpoint_mtime": None, "registry_wall": 10.0},
        False, Truth("LOST", alive=False, ended=False, since_wall=10.0, since=SinceSource.REGISTRY)),
    "a supervisor that let go without ever starting a task ended": (
        None, False, WALLS, True, Truth("NEW", alive=False, ended=True)),
    "a supervisor that went without letting go or starting a task: LOST": (
        None, False, WALLS, False,
        Truth("LOST", alive=False, ended=False, since_wall=50.0, since=SinceSource.LAST_RECORD)),
    "no sign at all: LOST, since nobody knows when": (
        "RUNNING", False, {"last_record_wall": None, "checkpoint_mtime": None, "registry_wall": None},
        False, Truth("LOST", alive=False, ended=False)),
}


@pytest.mark.parametrize("recorded, alive, walls, let_go, truth", TRUTHS.values(), ids=TRUTHS)
def test_the_truth_about_a_task(recorded, alive, walls, let_go, truth):
    assert judge(recorded, alive, let_go=let_go, **walls) == truth


@pytest.mark.parametrize("ends_as", ["FAILED", "KILLED"])
def test_a_task_whose_supervisor_died_while_killing_ends_as_the_kill_would_have(ends_as):
    truth = judge("KILLING", False, killing_ends_as=ends_as, **WALLS)
    assert truth == Truth(ends_as, alive=False, ended=True, died_killing=True)
    assert truth.unsupervised and not truth.lost  # its leftovers are looked for all the same


def test_a_killing_task_whose_record_says_no_end_is_lost():
    """A checkpoint of a Stoker from before the KILLING record said how the kill ends."""
    assert judge("KILLING", False, killing_ends_as=None, **WALLS).lost
    assert judge("KILLING", True, killing_ends_as="KILLED", **WALLS).state == "KILLING"  # still killing


NO_WALLS = {"last_record_wall": None, "checkpoint_mtime": None, "registry_wall": 10.0}


def test_a_task_whose_checkpoint_was_not_read_is_unknown_never_new():
    """Its sandbox gone, its `.stoker` renamed away, its checkpoint unreadable: nothing says
    it never started (was: NEW, read as "not started"). A supervisor gone without letting go
    stays LOST: that much is known."""
    assert judge(None, True, unread=True, **NO_WALLS) == Truth("UNKNOWN", alive=True, ended=False)
    assert judge(None, False, unread=True, let_go=True, **NO_WALLS) == Truth("UNKNOWN", alive=False, ended=True)
    assert judge(None, False, unread=True, **NO_WALLS).lost
    assert judge(None, True, **NO_WALLS).state == judge(None, False, let_go=True, **NO_WALLS).state == "NEW"


def test_a_lost_task_says_since_when_and_from_what():
    truth = judge("RUNNING", False, last_record_wall=50.0, checkpoint_mtime=None, registry_wall=None)
    assert truth.lost
    assert truth.describe_since("2026-11-29T10:15:00+00:00 (5s ago)") == (
        "LOST (supervisor gone since 2026-11-29T10:15:00+00:00 (5s ago), its checkpoint's last record)")
    replaced = attrs.evolve(truth, replaced_by="web-0-2")  # a later supervisor took its sandbox
    assert replaced.describe_since("then") == (
        "LOST (supervisor gone since then, its checkpoint's last record; replaced by web-0-2 in the same sandbox)")


def test_a_task_that_was_not_let_go_is_lost():
    truth = judge(None, False, last_record_wall=None, checkpoint_mtime=None, registry_wall=10.0)
    assert (truth.state, truth.ended) == ("LOST", False)


def test_a_lost_task_without_any_sign_says_so():
    truth = judge("RUNNING", False, last_record_wall=None, checkpoint_mtime=None, registry_wall=None)
    assert truth.describe_since("an unknown time") == "LOST (supervisor gone since an unknown time, unknown)"


@pytest.mark.parametrize("last, now, retention, gone", [
    (1000.0, 1000.0 + 7 * 86400, 7 * 86400.0, False),  # exactly the retention: still listed
    (1000.0, 1000.0 + 7 * 86400 + 1, 7 * 86400.0, True),
    (1000.0, 1500.0, 0.0, True),
    (None, 1500.0, 7 * 86400.0, True),  # no sign at all
])
def test_retention(last, now, retention, gone):
    assert expired(last, now, retention) is gone


@pytest.mark.parametrize("ended_wall, ended_state, recorded", [
    (2000.5, "FINISHED", True), (2000.5, "FAILED", True), (2000.5, "KILLED", True),
    (None, "KILLED", False),  # said, but the supervisor has not let go (or died before it did)
    (2000.5, "", False),  # let go without its end recorded (a full disk): LOST, read to be said
    (2000.5, "LOST", False),  # no end a supervisor records
])
def test_an_end_is_taken_as_recorded_only_once_let_go_and_terminal(ended_wall, ended_state, recorded):
    assert attrs.evolve(ENTRY, ended_wall=ended_wall, ended_state=ended_state).end_recorded is recorded


@pytest.mark.parametrize("boot, host, name", [
    ("48a5db0a-fe09_Z", ("0f1e", "node-a"), "ports.48a5db0a-fe09_Z.claims"),  # by its boot
    ("", ("0f1e", "node-a"), "ports.0f1e.node-a.claims"),  # else by its host, both parts
    ("b/o ot.é", ("0f1e", "node-a"), "ports.b_o_ot__.claims"),  # what a file name had better not hold
    ("", ("", "n.ö/de"), "ports..n___de.claims"),  # a dot of the host name too
])
def test_a_claims_file_is_named_by_its_boot_else_its_host_in_file_name_characters(boot, host, name):
    assert claims_name(boot, host) == name


def test_the_first_taker_of_a_sandbox_is_the_earliest_registered_after_it():
    later = attrs.evolve(ENTRY, supervisor_pid=5000, supervisor_start=ENTRY.supervisor_start + 20)
    first = attrs.evolve(ENTRY, supervisor_pid=5001, supervisor_start=ENTRY.supervisor_start + 10)
    earlier = attrs.evolve(ENTRY, supervisor_pid=5002, supervisor_start=ENTRY.supervisor_start - 10)
    elsewhere = attrs.evolve(first, supervisor_pid=5003, sandbox="/sb/other")
    assert first_taker([later, ENTRY, elsewhere, first, earlier], ENTRY) == first
    assert first_taker([earlier, elsewhere], ENTRY) is None
