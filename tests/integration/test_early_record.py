"""Whether the early start may trust what an earlier `stoker run` kept (`executor/cli/launch.py`:
`to_plan_ahead`, `_kept`, `_record`), read in this process from the plan cache a real run of
the same config made: kept for the same command, user and files; not once the config's text,
its plan file, the record's format, its code's place or its key moved, nor for another user;
and a damaged record or plan is no plan, never an error. What the runs then do is
tests/e2e/test_early_start*.py's."""
from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from executor.cli import launch
from executor.local import planfiles
from tests.support.earlyjob import run_to_success, write

pytestmark = pytest.mark.timeout(60)


class Kept:
    """A config `stoker run` ran once with the test's plan cache: its path, the environment
    that names that cache, and its entry's files."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = write(tmp_path, "Process(name='hi', cmdline='echo hi')")
        run_to_success(tmp_path, self.config)
        self.environ = {**os.environ, "STOKER_PLAN_CACHE": str(tmp_path / "plans")}
        self.entry = launch._entry(str(tmp_path / "plans"), str(self.config))
        self.start = Path(self.entry + planfiles.START_SUFFIX)
        self.plan = Path(self.entry + planfiles.PLAN_SUFFIX)

    def record(self, **environ: str) -> dict | None:
        return launch._record(self.entry, str(self.config), {**self.environ, **environ})

    def ahead(self, **environ: str) -> tuple[str, str | None] | None:
        return launch.to_plan_ahead(["run", str(self.config)], {**self.environ, **environ})

    def rewrite_record(self, change) -> None:
        """The launch record as `change(record)` returns it, written back as the cache writes it."""
        planfiles.write_private(str(self.start), marshal.dumps(change(marshal.loads(self.start.read_bytes()))))


@pytest.fixture
def kept(tmp_path: Path) -> Kept:
    return Kept(tmp_path)


def test_a_config_run_before_has_its_record_and_plan_trusted_as_they_are(kept):
    record = kept.record()
    assert record is not None and record["format"] == planfiles.LAUNCH_FORMAT and record["name"] == "early"
    assert kept.ahead() is None  # kept: nothing to plan ahead
    assert launch._kept(kept.entry, str(kept.config), kept.environ)


def test_a_config_never_run_is_planned_ahead_with_its_sandbox(tmp_path):
    config = write(tmp_path, "Process(name='hi', cmdline='echo hi')")
    environ = {**os.environ, "STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    assert launch.to_plan_ahead(["run", str(config)], environ) == (str(config), None)
    assert launch.to_plan_ahead(["run", str(config), "--sandbox", "box"], environ) == (str(config), "box")
    assert launch.to_plan_ahead(["run", str(config), "--bind", "x=1"], environ) is None  # not its form
    assert launch._record(launch._entry(str(tmp_path / "plans"), str(config)), str(config), environ) is None


def test_with_the_cache_off_every_run_of_the_form_is_planned_ahead(kept):
    assert kept.ahead(STOKER_PLAN_CACHE="off") == (str(kept.config), None)


def test_an_edited_config_is_neither_started_early_nor_kept(kept):
    kept.config.write_text(kept.config.read_text().replace("echo hi", "echo bye"))
    assert kept.record() is None and kept.ahead() == (str(kept.config), None)
    assert not launch._kept(kept.entry, str(kept.config), kept.environ)


def test_a_config_gone_is_neither_started_early_nor_kept(kept):
    kept.config.unlink()
    assert kept.record() is None and not launch._kept(kept.entry, str(kept.config), kept.environ)


def test_another_user_s_run_of_the_same_file_is_not_this_one_s(kept):
    other = {"LOGNAME": "someone-else", "USER": "someone-else"}
    assert kept.record(**other) is None and kept.ahead(**other) == (str(kept.config), None)


def test_a_record_without_its_plan_file_is_no_record(kept):
    kept.plan.unlink()
    assert kept.record() is None


@pytest.mark.parametrize(("what", "change"), [
    ("another format", lambda record: {**record, "format": planfiles.LAUNCH_FORMAT + 1}),
    ("no format", lambda record: {k: v for k, v in record.items() if k != "format"}),
    ("not a record", lambda record: [record]),
    ("code from another place", lambda record: {**record, "roots": tuple(f"{r}.old" for r in record["roots"])}),
    ("another key", lambda record: {**record, "key": (*record["key"][:-1], "someone-else")}),
    ("a source since changed", lambda record: {**record, "sources": [(p, t + "#") for p, t in record["sources"]]}),
])
def test_a_record_that_no_longer_holds_is_no_record(kept, what, change):
    kept.rewrite_record(change)
    assert kept.record() is None, what


def test_a_record_or_plan_another_user_could_have_written_is_not_read(kept):
    kept.start.chmod(0o622)
    assert kept.record() is None
    kept.start.chmod(0o600)
    kept.plan.chmod(0o622)
    assert kept.record() is not None and not launch._kept(kept.entry, str(kept.config), kept.environ)


@pytest.mark.parametrize("damage", [b"", b"\x00garbage", marshal.dumps(5), marshal.dumps((1, 2)),
                                    marshal.dumps(((), [("x",)], 0))])
def test_a_damaged_plan_is_no_plan_and_no_error(kept, damage):
    planfiles.write_private(str(kept.plan), damage)
    assert not launch._kept(kept.entry, str(kept.config), kept.environ)
    assert kept.ahead() == (str(kept.config), None)
