"""The `stoker` command line as a new user meets it: one `stoker: error:` line naming the
real cause, help for every argument, `--version`, no third-party warnings, nothing printed
that can drive the terminal, and `stoker run`'s output: columns, a failed run's stderr,
no line twice, the live view cleared at the end (docs/contract.md §1, §8, §9).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config.argdecl import variables
from config.executorsettings import ExecutorSettings
from executor.cli.main import _parser
from tests.support.configs import RESOURCES, write_config
from tests.support.pty_proc import PtyProcess
from tests.support.shellwords import fake_sh, in_aurora, python_sh
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

EXAMPLES = REPO / "examples"
def stoker(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MESOS_", "STOKER_")) or k in ("STOKER_ROOT", "STOKER_PLAN_CACHE")}
    # (the tests' registry and plan cache, never the user's)
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *python_flags, "-m", "executor", *args], cwd=cwd or REPO,
                          env=full_env, capture_output=True, text=True, timeout=60)


def one_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single `stoker: error:` line of a failed command, without its prefix."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stoker: error: "), result.stderr
    return lines[0].removeprefix("stoker: error: ")


# ---- errors name the real cause ----


def test_status_of_a_missing_directory_says_so():
    assert one_error(stoker("status", "/nonexistent/sandbox")) == "sandbox '/nonexistent/sandbox' does not exist"


def test_status_of_a_file_says_it_is_no_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    assert one_error(stoker("status", "notes.txt", cwd=tmp_path)) == "sandbox 'notes.txt' is not a directory"


def test_tail_of_a_missing_directory_says_so():
    assert one_error(stoker("tail", "/nonexistent/sandbox", "web")) == "sandbox '/nonexistent/sandbox' does not exist"


def test_a_sandbox_that_is_a_file_is_named_as_such(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    message = one_error(stoker("run", str(EXAMPLES / "hello_world.aurora"), "--sandbox", "notes.txt", cwd=tmp_path))
    assert message == "sandbox 'notes.txt' exists and is not a directory"


@pytest.mark.parametrize("grace", ["8days", "1e300"])
def test_a_kill_grace_longer_than_the_supervisor_takes_is_a_usage_error(grace, capsys):
    """`stoker kill X --grace 8days` reached the supervisor, which refused it (exit 1), while
    `--grace -1` or `inf` were usage errors (exit 2): now every grace it cannot take is one."""
    with pytest.raises(SystemExit) as ended:
        _parser().parse_args(["kill", "sandbox", "--grace", grace])
    assert ended.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"stoker kill: error: argument --grace: {grace!r} is longer than the longest grace, "
        f"604800 s (7 days)\n")


def test_arguments_in_aurora_order_get_a_hint():
    example = str(EXAMPLES / "hello_world.aurora")
    message = one_error(stoker("inspect", "devcluster/www-data/prod/hello", example))
    assert message == ("'devcluster/www-data/prod/hello': cannot read the config file: No such file or "
                       "directory; the config file comes first, then the job key: did you mean "
                       f"{shlex.quote(example)} devcluster/www-data/prod/hello?")  # a checkout at "/a b/" too


@pytest.mark.parametrize("config, cluster", [("-x.aurora", "c"), ("x.aurora", "-c")])
def test_the_aurora_order_hint_for_a_word_that_starts_with_a_dash_runs_pasted_into_a_shell(tmp_path, config, cluster):
    """`stoker inspect -- c/r/e/web -x.aurora` said `did you mean -x.aurora c/r/e/web?`:
    pasted after `stoker inspect`, argparse read `-x.aurora` as an option (`unrecognized
    arguments`), as it read a job key `-c/r/e/web`."""
    (tmp_path / config).write_text(f"jobs = [Job(cluster='{cluster}', role='r', environment='e', name='web', "
                                   f"task=Task(processes=[Process(name='web', cmdline='x')], {RESOURCES}))]\n")
    key = f"{cluster}/r/e/web"
    message = one_error(stoker("inspect", "--", key, config, cwd=tmp_path))
    words = message.split(": did you mean ", 1)[1].removesuffix("?")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    for shell in ("dash", "bash"):
        line = f"{python_sh('-m', 'executor')} inspect {words}"
        pasted = subprocess.run([shell, "-c", line], cwd=tmp_path, env=dict(env, PYTHONPATH=str(REPO)),
                                capture_output=True, text=True, timeout=60)
        assert pasted.returncode == 0 and pasted.stdout.startswith(f"job {key}\n"), (shell, line, pasted.stderr)


def test_a_port_name_the_job_does_not_use_is_an_error(tmp_path):
    cfg = write_config(tmp_path, f"""
        web = Process(name='web', cmdline='serve {{{{thermos.ports[health]}}}} {{{{thermos.ports[http]}}}}')
        jobs = [Job(cluster='c', role='r', environment='e', name='web', task=Task(processes=[web], {RESOURCES}))]
    """)
    message = one_error(stoker("run", str(cfg), "--port", "helth=8080", "--sandbox", str(tmp_path / "sb"),
                               cwd=tmp_path))
    assert message == ("--port helth=8080: job c/r/e/web has no port named 'helth' (did you mean 'health'?); "
                       "its ports: health, http")
    assert not (tmp_path / "sb").exists()


def test_a_port_for_a_job_without_ports(tmp_path):
    message = one_error(stoker("run", str(EXAMPLES / "hello_world.aurora"), "--port", "http=8080",
                               cwd=tmp_path))
    assert message == "--port http=8080: job devcluster/www-data/prod/hello has no port named 'http'; it uses no ports"


def test_settings_errors_speak_in_flags_not_classes():
    message = one_error(stoker("run", str(EXAMPLES / "hello_world.aurora"), "--kill-grace", "soon"))
    assert message == "--kill-grace='soon' is not a duration (e.g. 15mins, 500ms)"


def test_an_unknown_attribute_in_a_config_names_struct_field_and_fix(tmp_path):
    cfg = write_config(tmp_path, f"""
        web = Process(name='web', cmdlin='serve')
        jobs = [Job(cluster='c', role='r', environment='e', name='web', task=Task(processes=[web], {RESOURCES}))]
    """)
    assert one_error(stoker("inspect", str(cfg))) == f"{cfg}:1: Process has no field 'cmdlin'; did you mean 'cmdline'?"


def test_runaway_recursion_in_a_config_is_one_short_line(tmp_path):
    cfg = write_config(tmp_path, "def f():\n    return f()\njobs = [f()]\n")
    message = one_error(stoker("inspect", str(cfg)))
    assert message == (f"{cfg}:2: RecursionError: the config code recursed too deeply (a function that "
                       "calls itself without end?)")


@pytest.mark.parametrize("code, ended", [
    ("import os\nos._exit(0)\n", "exit status 0"),
    ("raise KeyboardInterrupt\n", "exit status 1"),
])
def test_a_config_that_ends_the_process_running_it_is_one_line_naming_it(tmp_path, code, ended):
    # `stoker run` runs the config in a child process; it used to end in a RuntimeError traceback.
    cfg = write_config(tmp_path, code)
    message = one_error(stoker("run", str(cfg), "--sandbox", str(tmp_path / "sb"), cwd=tmp_path))
    assert message == (f"'{cfg}': the process running the config ended ({ended}) before the job was "
                       "planned: does its code call os._exit(), kill its own process or raise "
                       "KeyboardInterrupt?")
    assert not (tmp_path / "sb").exists()


def test_an_explicit_sandbox_wins_over_mesos_sandbox_with_one_warning(tmp_path):
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='c', role='r', environment='e', name='once',
                    task=Task(processes=[Process(name='a', cmdline='true')], {RESOURCES}))]
    """)
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    result = stoker("run", str(cfg), "--sandbox", str(mine), cwd=tmp_path, env={"MESOS_SANDBOX": str(theirs)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"stoker: warning: --sandbox {mine} wins over MESOS_SANDBOX={theirs}"]
    assert (mine / ".stoker" / "checkpoint.jsonl").exists() and not theirs.exists()


def test_with_json_logs_the_warning_and_the_error_lines_are_json_too(tmp_path):
    """Once `--log-format json` is known, stderr holds JSON objects only: the `stoker:
    warning:` and `stoker: error:` lines were plain text among them."""
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='c', role='r', environment='e', name='once',
                    task=Task(processes=[Process(name='a', cmdline='true')], {RESOURCES}))]
    """)
    (tmp_path / "file").write_text("")
    result = stoker("run", str(cfg), "--sandbox", str(tmp_path / "file"), "--log-format", "json",
                    cwd=tmp_path, env={"STOKER_LOG_FORMAT": "text"})
    assert result.returncode == 2
    warning, error = (json.loads(line) for line in result.stderr.splitlines())
    assert (warning["level"], warning["event"], warning["reason"]) == (
        "WARNING", "stoker_warning", "--log-format json wins over STOKER_LOG_FORMAT=text")
    assert (error["level"], error["event"], error["reason"]) == (
        "ERROR", "stoker_error", f"sandbox '{tmp_path / 'file'}' exists and is not a directory")


# ---- a conventional, quiet command line ----


def test_version():
    """Run from the checkout (as here, through the venv's editable install), the version
    names no commit: the checkout's may have moved on since the install, whose recorded
    version (`make`'s: STOKER_BUILD_VERSION=0.1.0) names none either. An installed copy's
    is its build's (tests/e2e/test_dist.py)."""
    import executor

    assert Path(executor.__file__).resolve().parent.parent == REPO.resolve()  # the checkout's
    result = stoker("--version")
    assert result.returncode == 0 and result.stdout == f"stoker {executor.BASE_VERSION}\n"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_command_has_a_description_an_example_and_help_for_every_argument(name):
    parser = _subcommands()[name]
    assert parser.description and f"stoker {name}" in (parser.epilog or ""), name
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"stoker {name} {action.dest}"


def test_executor_help_lists_the_variables_it_reads():
    out = stoker("executor", "--help").stdout
    for name, _ in variables(ExecutorSettings):
        assert name in out, name
    assert "MESOS_AGENT_ENDPOINT" in out and "(required)" in out


@pytest.mark.parametrize("args", [["inspect", "examples/hello_world.aurora"], ["--help"], ["run", "--help"]])
def test_no_third_party_warning_reaches_stderr(tmp_path, args):
    """pystachio has invalid escapes: compiled from source (as a zipapp does on every call),
    Python 3.12+ prints SyntaxWarnings, 3.11 DeprecationWarnings. Made errors here."""
    import pystachio

    copy = tmp_path / "site"
    shutil.copytree(Path(pystachio.__file__).parent, copy / "pystachio",
                    ignore=shutil.ignore_patterns("__pycache__"))
    result = stoker(*args, env={"PYTHONPATH": f"{copy}:{REPO}", "PYTHONDONTWRITEBYTECODE": "1"},
                    python_flags=("-W", "error::SyntaxWarning", "-W", "error::DeprecationWarning"))
    assert result.returncode == 0 and result.stderr == ""
    # the copy was used, and without the filter it does warn: the test can fail
    bare = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-W", "error::SyntaxWarning",
                           "-c", "import pystachio; print(pystachio.__file__)"],
                          env={**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"},
                          capture_output=True, text=True, timeout=30)
    assert bare.returncode != 0 and "invalid escape sequence" in bare.stderr


@pytest.mark.parametrize("module", [
    "executor.cli.main",
    "attr",  # the attrs code cache being installed: it was a traceback
    "executor.cli.control",  # the arguments being parsed, in main(): it was a traceback
])
def test_ctrl_c_while_the_command_loads_exits_130_without_a_traceback(tmp_path, module):
    """A Ctrl-C that lands while `stoker`'s modules load (here a sitecustomize raises it
    when `module` is imported) ends the command quietly with the shell's code."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys

        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r}:
                    raise KeyboardInterrupt

        sys.meta_path.insert(0, Interrupt())
    """))
    result = stoker("--version", env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert (result.returncode, result.stderr) == (130, "")


def test_ctrl_c_after_the_log_is_configured_exits_130_without_a_traceback(tmp_path):
    """The log's hook for what no code caught (`logsetup._crashed`) handed a Ctrl-C to
    Python's own hook, not to `stoker`'s quiet one it replaced: a traceback (reproduced: a
    script named `stoker` that configures the log, then is interrupted)."""
    script = tmp_path / "stoker"
    script.write_text("import executor.cli.logsetup as l\nl.configure()\nraise KeyboardInterrupt\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (result.returncode, result.stderr) == (130, "")
    (tmp_path / "other").write_bytes(script.read_bytes())  # not `stoker`: Python's own handling
    other = subprocess.run([sys.executable, str(tmp_path / "other")], capture_output=True, text=True,
                           timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert other.returncode == -signal.SIGINT and other.stderr.endswith("KeyboardInterrupt\n")


# ---- nothing printed drives the terminal ----


ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m"


def test_escape_sequences_from_a_health_body_and_a_process_name_come_out_escaped(tmp_path):
    body = ESCAPES.replace("\x1b", "\\e").replace("\x07", "\\a").replace("\x9b", "\\x9b")
    cfg = write_config(tmp_path, f"""
        web = Process(name='web', cmdline="exec {in_aurora(fake_sh())} --serve-health {{{{thermos.ports[health]}}}} --health-body $'{body}'")
        jobs = [Job(cluster='c', role='r', environment='e', name='web', task=Task(processes=[web], {RESOURCES}),
                    health_check_config=HealthCheckConfig(initial_interval_secs=1, interval_secs=0.2),
                    lifecycle=DisableLifecycle)]
    """)
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(cfg), "--sandbox", str(sandbox), "--kill-grace", "0.5"], tmp_path)
    try:
        assert run.wait(30) == 1  # the body is not "ok": the health check fails the task
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))
    out = run.stdout()
    assert 'body "\\x1b[2J\\x1b]0;pwned\\x07\\u009b31m", expected "ok"' in out  # U+009B: no byte's \\x9b
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", out + run.stderr())
    # `stoker status` of the same sandbox, with a process name as a crafted checkpoint has it
    path = sandbox / ".stoker" / "checkpoint.jsonl"
    path.write_text(path.read_text().replace('"process":"web"', '"process":"we\\u001b[31mb"'))
    status = stoker("status", str(sandbox))
    assert status.returncode == 0, status.stderr
    assert "we\\x1b[31mb" in status.stdout and "\\x1b[2J\\x1b]0;pwned" in status.stdout
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", status.stdout + status.stderr)


# ---- stoker run's output ----


def test_a_failed_run_shows_its_last_stderr_lines_and_the_tail_command(tmp_path):
    cfg = write_config(tmp_path, f"""
        a = Process(name='a', cmdline="echo starting; for i in 1 2 3 4 5 6 7; do echo line $i >&2; done; "
                                       "printf 'OSError: [Errno 98] Address already in use\\\\x1b[31m\\\\n' >&2; exit 1")
        jobs = [Job(cluster='c', role='r', environment='e', name='fails', task=Task(processes=[a], {RESOURCES}))]
    """)
    sandbox = tmp_path / "sandbox"
    result = stoker("run", str(cfg), "--sandbox", str(sandbox), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    failed = next(i for i, line in enumerate(lines) if "a[0]             RUNNING → FAILED" in line)
    indent = " " * lines[failed].index("RUNNING → FAILED")
    assert lines[failed + 1:failed + 7] == [
        f"{indent}| line 3", f"{indent}| line 4", f"{indent}| line 5", f"{indent}| line 6", f"{indent}| line 7",
        f"{indent}| OSError: [Errno 98] Address already in use\\x1b[31m",
    ][-5:] + [f"{indent}(the last 5 lines of its stderr; all of it: stoker tail {sandbox} a --stderr --run 0 -n +1; "
              "once the task has restarted, add --attempt 0)"]


def test_state_changes_are_not_repeated_on_stderr(tmp_path):
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='c', role='r', environment='e', name='fails',
                    task=Task(processes=[Process(name='a', cmdline='exit 3')], {RESOURCES}))]
    """)
    result = stoker("run", str(cfg), "--sandbox", str(tmp_path / "sb"), cwd=tmp_path)
    assert result.returncode == 1
    assert "a[0]             RUNNING → FAILED" in result.stdout
    assert result.stderr == "", result.stderr  # the WARNING for the failed process was a repeat


def test_columns_are_sized_to_the_longest_process_name(tmp_path):
    long = "a_rather_long_process_name_for_columns"
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='c', role='r', environment='e', name='cols',
                    task=Task(processes=[Process(name='{long}', cmdline='true'), Process(name='b', cmdline='true')],
                              {RESOURCES}))]
    """)
    result = stoker("run", str(cfg), "--sandbox", str(tmp_path / "sb"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text_columns = {len(re.match(r"\S+\s+\S+\s+\S+\s+", line).group())
                    for line in result.stdout.splitlines() if " → " in line}
    assert len(text_columns) == 1, result.stdout  # one text column, under the longest subject
    assert re.search(re.escape(long) + r"\[0\]   WAITING → RUNNING", result.stdout)  # room for [100]


def test_the_live_view_on_a_terminal_is_cleared_at_the_end(tmp_path):
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='c', role='r', environment='e', name='once',
                    task=Task(processes=[Process(name='a', cmdline='sleep 0.3')], {RESOURCES}))]
    """)
    term = PtyProcess(["run", str(cfg), "--sandbox", str(tmp_path / "sb")], tmp_path)
    try:
        out = term.read_to_end(20)
        assert term.wait() == 0
    finally:
        term.close()
    assert b"\x1b[7m[once.0 RUNNING]" in out  # the live view was there
    assert out.endswith(b"task finished successfully (exit 0)\r\n"), out[-300:]  # nothing drawn after
    last = out.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
    assert b"\x1b[7m" not in last.rsplit(b"\x1b[2K", 1)[-1]  # the view was cleared before it


def test_ctrl_c_on_a_terminal_prints_the_hint_and_exits_130(tmp_path):
    cfg = write_config(tmp_path, f"""
        jobs = [Service(cluster='c', role='r', environment='e', name='svc',
                        task=Task(processes=[Process(name='a', cmdline='sleep 60')], {RESOURCES}))]
    """)
    term = PtyProcess(["run", str(cfg), "--sandbox", str(tmp_path / "sb")], tmp_path)
    try:
        term.read_until("a[0]             WAITING → RUNNING".encode())
        os.kill(term.pid, signal.SIGINT)
        assert term.wait() == 130
        out = term.read_to_end(5)
    finally:
        term.close()
        kill_leftovers(task_pids(tmp_path / "sb"))
    assert b"SIGINT: stopping gracefully; press Ctrl-C again" in out
    assert out.rstrip(b"\r\n").endswith(b"(exit 130)")
