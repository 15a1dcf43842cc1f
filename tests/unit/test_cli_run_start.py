"""`stoker run`'s command (`executor.cli.main._cmd_run`), in process: what it hands the run
(`LocalRun`) of the entry point's early start and of a first run's plan made ahead, its
settings and log configuration, and what it gives up when it fails before the run holds them.
The early start, the plan and `LocalRun` are stand-ins that record what they were given."""
from __future__ import annotations

import pytest

from executor.cli import launch
from executor.cli import main as cli_main
from executor.local import run as local_run
from executor.local.runstart import SandboxError


class Early:
    """An early start's runs, as `launch.take()` or a first run's `start_first` gives them."""

    def __init__(self, name: str, record: list) -> None:
        self.name, self.record = name, record

    def abandon(self) -> None:
        self.record.append(("abandon", self.name))


class Ahead:
    """A first run's plan made ahead, as `take_ahead()` gives it."""

    def __init__(self, record: list) -> None:
        self.record = record

    def cancel(self) -> None:
        self.record.append(("cancel",))


class First:
    """`launch.first_run()`'s module: its plan made ahead, and the start of its first runs."""

    def __init__(self, record: list, ahead: Ahead | None) -> None:
        self.record, self.ahead = record, ahead

    def take_ahead(self) -> Ahead | None:
        return self.ahead

    def start_first(self, ahead: Ahead) -> Early:
        self.record.append(("start_first", ahead is self.ahead))
        return Early("first", self.record)


@pytest.fixture
def started(monkeypatch, tmp_path):
    """`_cmd_run` of `stoker run x.aurora --sandbox SB WORDS...` with the given early start,
    first run and run: its status; `started.record`: the steps recorded, `started.made`: what
    the run was made with."""
    record: list[tuple] = []
    made: dict[str, object] = {}

    monkeypatch.setattr(cli_main.logsetup, "configure", lambda *given, **kw: record.append(("configure", given, kw)))
    monkeypatch.setattr(cli_main.logsetup, "say", lambda kind, message: record.append((kind, message)))
    monkeypatch.setattr(cli_main, "_cgroup_early", lambda early, setting: record.append(("cgroup", early.name, setting)))
    monkeypatch.setattr(cli_main, "_unit_state", lambda ready_fd: ("unit", ready_fd))
    monkeypatch.delenv("STOKER_LOG_FORMAT", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    def start(*words: str, early: bool = False, first: str | None = None, fails: BaseException | None = None,
              fails_in_run: BaseException | None = None, env: dict[str, str] | None = None) -> int:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        ahead = Ahead(record) if first == "ahead" else None
        monkeypatch.setattr(launch, "take", lambda: Early("early", record) if early else None)
        monkeypatch.setattr(launch, "first_run", lambda: First(record, ahead) if first else None)

        class Run:
            def __init__(self, settings, **kw) -> None:
                if fails is not None:
                    raise fails
                made.update(kw, settings=settings)

            def run(self) -> int:
                record.append(("run",))
                if fails_in_run is not None:
                    raise fails_in_run
                return 5

        monkeypatch.setattr(local_run, "LocalRun", Run)
        args = cli_main._arguments(["run", "x.aurora", "--sandbox", str(tmp_path / "sb"), *words])
        return cli_main._cmd_run(args)

    start.record, start.made = record, made  # type: ignore[attr-defined]
    return start


def test_a_run_is_made_with_the_settings_and_runs_to_its_status(started, tmp_path):
    assert started("--log-level", "debug", "--root", str(tmp_path / "registry")) == 5
    assert started.record == [
        ("configure", ("text", "DEBUG"), {"drop_events": cli_main.RUN_PRINTED_EVENTS, "spooled": True}), ("run",)]
    settings = started.made.pop("settings")
    assert (settings.config, settings.sandbox, settings.log_level) == ("x.aurora", str(tmp_path / "sb"), "DEBUG")
    assert started.made.pop("registry").registry_root == str(tmp_path / "registry")
    assert started.made == {"early": None, "ahead": None, "spooled": True, "exits_after": True, "unit": ("unit", None)}


def test_a_ready_descriptor_is_the_service_manager_s_state_handed_to_the_run(started):
    started("--ready-fd", "7")
    assert started.made["unit"] == ("unit", 7)


def test_in_a_deleted_working_directory_a_relative_path_is_refused_and_the_early_runs_given_up(started, tmp_path,
                                                                                               monkeypatch):
    from executor.cli import UsageError

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(UsageError, match="^'x.aurora': "):
        started(early=True, first="ahead")
    assert started.record == [("abandon", "early"), ("cancel",)]


def test_json_logs_keep_every_event(started):
    started("--log-format", "json")
    assert started.record[0] == ("configure", ("json", "WARNING"), {"drop_events": (), "spooled": True})


def test_each_flag_that_wins_over_a_variable_is_one_warning_after_the_log_is_configured(started, tmp_path):
    started("--log-level", "debug", env={"STOKER_LOG_LEVEL": "warning"})
    assert [step[0] for step in started.record] == ["configure", "warning", "run"]
    assert started.record[1] == ("warning", "--log-level debug wins over STOKER_LOG_LEVEL=warning")


def test_the_early_start_s_runs_are_handed_to_the_run_after_their_cgroup_is_begun(started):
    started("--cgroups", "off", early=True, first="none")
    assert started.record[1:] == [("cgroup", "early", "off"), ("run",)]
    assert started.made["early"].name == "early" and started.made["ahead"] is None


def test_a_first_run_s_plan_made_ahead_starts_its_runs_once_the_settings_are_read(started):
    started(first="ahead")
    assert started.record[1:] == [("start_first", True), ("cgroup", "first", "auto"), ("run",)]
    assert started.made["early"].name == "first" and isinstance(started.made["ahead"], Ahead)


def test_an_early_start_wins_over_a_plan_made_ahead_which_the_run_is_handed_still(started):
    started(early=True, first="ahead")
    assert ("start_first", True) not in started.record
    assert started.made["early"].name == "early" and isinstance(started.made["ahead"], Ahead)


def test_a_sandbox_error_is_one_error_line_exit_2_and_gives_up_what_the_run_did_not_take(started):
    status = started(early=True, first="ahead", fails=SandboxError("sandbox 'sb' is in use"))
    assert status == cli_main.EXIT_USAGE
    assert started.record[-3:] == [("error", "sandbox 'sb' is in use"), ("abandon", "early"), ("cancel",)]


def test_any_other_failure_is_raised_and_still_gives_them_up(started):
    with pytest.raises(LookupError, match="^a bug$"):
        started(early=True, first="ahead", fails=LookupError("a bug"))
    assert started.record[-2:] == [("abandon", "early"), ("cancel",)]
    assert not any(step[0] == "error" for step in started.record)


def test_settings_refused_give_up_the_early_runs_and_the_plan_before_anything_is_configured(started):
    from config.errors import ConfigError

    with pytest.raises(ConfigError, match="--kill-grace"):
        started("--kill-grace", "-1", early=True, first="ahead")
    assert started.record == [("abandon", "early"), ("cancel",)]


def test_once_the_run_holds_them_its_failure_gives_nothing_up_here(started):
    with pytest.raises(LookupError, match="^in the run$"):
        started(early=True, first="ahead", fails_in_run=LookupError("in the run"))
    assert started.record[-1] == ("run",)
    assert not any(step[0] in ("abandon", "cancel") for step in started.record)
