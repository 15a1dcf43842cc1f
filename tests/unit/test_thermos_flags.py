"""Thermos' executor flags on `stoker executor`: read with Thermos' spellings (docs/aurora.md
§13), a bad value named before anything starts, and the cluster's logger defaults reaching
only the processes whose job leaves `logger` unset, in both forms of TaskInfo.data."""
from __future__ import annotations

import pytest

from config.errors import SettingsError
from config.executorsettings import ExecutorSettings
from config.spec import MIB, LogDestination, LoggerDefaults, LoggerSpec, LogMode
from executor.cli.main import _parser
from executor.mesos.executor import StokerExecutor
from executor.mesos.launch import LaunchError, prepare_launch
from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.configs import write_config

ENV = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e"}
JOB = """
    plain = Process(name='plain', cmdline='echo plain')
    own = Process(name='own', cmdline='echo own', logger=Logger(destination='console', mode='rotate'))
    sized = Process(name='sized', cmdline='echo sized',
                    logger=Logger(mode='rotate', rotate=RotatePolicy(log_size=2*MB, backups=3)))
    jobs = [Job(cluster='c', role='www-data', environment='test', name='logs',
                task=Task(processes=[plain, own, sized], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""


def settings(*words: str, environ: dict[str, str] | None = None) -> ExecutorSettings:
    args = _parser("executor").parse_args(["executor", *words])
    return ExecutorSettings.from_args(args, {**ENV, **(environ or {})})


def test_thermos_spellings_are_read_and_the_defaults_are_thermos():
    s = settings("--runner-logger-destination", "both", "--runner_logger_mode=rotate",
                 "--runner-rotate-log-size-mb", "7", "--runner-rotate-log-backups=2",
                 "--execute-as-user", "bob", "--nosetuid-health-checks", "--stop_timeout_in_secs=30",
                 "--mesos-containerizer-path=/x/containerizer", "--no-create-user", "--sandbox-mount-point", "/mnt/x")
    assert s.logger_defaults == LoggerDefaults(LogDestination.BOTH, LogMode.ROTATE, 7 * MIB, 2)
    assert (s.execute_as_user, s.nosetuid_health_checks, s.stop_timeout_secs) == ("bob", True, 30.0)
    assert (s.mesos_containerizer_path, s.no_create_user, s.sandbox_mount_point) == ("/x/containerizer", True, "/mnt/x")
    d = settings()
    assert (d.logger_defaults, d.execute_as_user, d.stop_timeout_secs, d.launch_timeout_secs) == (
        LoggerDefaults(), None, 120.0, 10.0)
    assert settings(environ={"STOKER_LAUNCH_TIMEOUT": "250ms"}).launch_timeout_secs == 0.25
    assert settings("--launch-timeout", "0").launch_timeout_secs == 0.0


@pytest.mark.parametrize("words, message", [
    (["--runner-rotate-log-size-mb", "0"], "--runner-rotate-log-size-mb='0' is not a whole number of at least 1"),
    (["--runner-rotate-log-backups=-1"], "--runner-rotate-log-backups='-1' is not a whole number of at least 1"),
    (["--stop_timeout_in_secs=-5"], "--stop-timeout-in-secs='-5' is not a non-negative number of seconds"),
    (["--launch-timeout", "x"], "--launch-timeout='x' is not a duration"),
])
def test_a_bad_value_is_a_settings_error_naming_the_flag_and_the_value(words, message):
    with pytest.raises(SettingsError, match=message):
        settings(*words)


@pytest.mark.parametrize("words, message", [
    (["--mesos-containerizer-path="], "--mesos-containerizer-path='' is not a path"),
    (["--sandbox-mount-point", "/a\0b"], "--sandbox-mount-point='/a\\x00b' is not a path"),
    (["--execute-as-user="], "--execute-as-user='' is not a user name"),
    (["--execute-as-user", " bob"], "--execute-as-user=' bob' is not a user name"),
    (["--execute-as-user", "b\0b"], "--execute-as-user='b\\x00b' is not a user name"),
])
def test_an_empty_path_or_user_or_one_with_a_nul_or_spaces_is_refused_in_these_words(words, message):
    with pytest.raises(SettingsError) as refused:
        settings(*words)
    assert str(refused.value) == message


def test_a_bad_variable_is_named_too():
    with pytest.raises(SettingsError, match="STOKER_RUNNER_LOGGER_MODE='fancy' is not a logger mode"):
        settings(environ={"STOKER_RUNNER_LOGGER_MODE": "fancy"})


@pytest.mark.parametrize("form", ["aurora", "stoker"])
def test_the_defaults_reach_only_a_process_without_a_logger(tmp_path, form):
    path = write_config(tmp_path, JOB)
    if form == "aurora":
        data = assigned_task(client_json(path), role="www-data", name="logs")
    else:
        from config.document import encode
        from config.loader import load_job

        data = encode(load_job(path))
    spec = prepare_launch(make_task_info("t", data), task_id="t", hostname="h", framework_user=None).spec
    assert [p.logger_unset for p in spec.task.processes] == [True, False, False]
    assert spec.with_logger_defaults(LoggerDefaults()) is spec  # no flag: Thermos' file/standard
    flags = LoggerDefaults(LogDestination.BOTH, LogMode.ROTATE, 1 * MIB, 1)
    plain, own, sized = spec.with_logger_defaults(flags).task.processes
    assert plain.logger == LoggerSpec(LogDestination.BOTH, LogMode.ROTATE, 1 * MIB, 1)
    # A logger of its own is kept whole: its rotation, or 100 MiB / 5, never the flags' sizes.
    assert own.logger == LoggerSpec(LogDestination.CONSOLE, LogMode.ROTATE, 100 * MIB, 5)
    assert sized.logger == LoggerSpec(LogDestination.FILE, LogMode.ROTATE, 2 * MIB, 3)


def test_a_mode_alone_keeps_thermos_sizes_and_destination():
    assert LoggerDefaults(mode=LogMode.ROTATE).logger() == LoggerSpec(LogDestination.FILE, LogMode.ROTATE,
                                                                      100 * MIB, 5)


def test_execute_as_an_unknown_user_fails_the_task_naming_the_flag_and_the_user(tmp_path):
    path = write_config(tmp_path, JOB)
    launch = prepare_launch(make_task_info("t", assigned_task(client_json(path), role="www-data", name="logs")),
                            task_id="t", hostname="h", framework_user=None)
    executor = StokerExecutor(settings("--execute-as-user", "stkr-nobody-here"), {}, on_done=lambda: None)
    with pytest.raises(LaunchError) as info:
        executor._run_as(launch)
    assert str(info.value) == "--execute-as-user=stkr-nobody-here: there is no user 'stkr-nobody-here' on this machine"


def test_the_launch_timeout_ends_only_an_executor_that_has_no_task():
    waiting = StokerExecutor(settings(), {}, on_done=lambda: None)
    assert waiting.launch_timed_out() is True
    assert waiting._claim("late") is not None  # a LAUNCH after it is refused
    launched = StokerExecutor(settings(), {}, on_done=lambda: None)
    assert launched._claim("t") is None
    assert launched.launch_timed_out() is False



def test_a_launched_task_outlives_the_launch_timeout_and_an_idle_executor_does_not(caplog):
    """`_wait_for_task` with a 20 ms launch timeout: the executor whose task came keeps
    waiting for its end; the one with none returns at the timeout, saying so."""
    import queue
    import threading

    from executor.mesos.driver import ExecutorDriver
    from executor.mesos.process import TaskDone, _wait_for_task

    launched = StokerExecutor(settings(), {}, on_done=lambda: None)
    launched._claim("t")
    wakeups: queue.SimpleQueue = queue.SimpleQueue()
    done = threading.Timer(0.1, wakeups.put, [TaskDone()])  # the task ends well after the timeout
    done.start()
    assert _wait_for_task(wakeups, launched, ExecutorDriver(launched, settings()), launch_timeout_secs=0.02) is False
    assert wakeups.empty() and "launch_timeout" not in caplog.text  # it returned at the task's end
    idle = StokerExecutor(settings(), {}, on_done=lambda: None)
    assert _wait_for_task(queue.SimpleQueue(), idle, ExecutorDriver(idle, settings()), launch_timeout_secs=0.02) is False
    assert "no task was launched within 0.02 s (--launch-timeout)" in caplog.text
