"""`stoker run` end to end, its locale and the text of its lines: the task gets the locale
the operator gave, a cmdline the locale cannot encode reaches bash as UTF-8, and the sandbox
and announcing lines write out a format character. The real CLI as a child process, real
task processes. The rest of `stoker run`: test_stoker_run.py."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.configs import write_config
from tests.support.ports import free_ports
from tests.support.shellwords import c_locale_starts
from tests.support.stoker_proc import REPO, kill_leftovers, stoker_runs, task_pids


@pytest.fixture
def stoker(tmp_path):
    with stoker_runs(tmp_path) as start:
        yield start


def test_a_task_gets_the_locale_the_operator_gave_not_pythons_coerced_one(tmp_path):
    """Under `LANG=C` (no LC_ALL, no LC_CTYPE) Python's locale coercion set LC_CTYPE=C.UTF-8
    in Stoker's own environment as it started, and every task process inherited it: not
    the environment the operator gave. Now Stoker undoes it before anything reads the
    environment: the task sees LANG=C and no LC_CTYPE, as the shell had it."""
    cfg = write_config(tmp_path, """
        show = Process(name='show', cmdline='echo "LANG=$LANG LC_CTYPE=${LC_CTYPE-unset}"')
        jobs = [Job(cluster='local', role='me', environment='test', name='locale',
                    task=Task(processes=[show], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    sandbox = tmp_path / "sandbox"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LC_", "MESOS_")) and k not in ("LANG", "LANGUAGE", "PYTHONCOERCECLOCALE")}
    env.update({"LANG": "C", "PYTHONPATH": str(REPO)})
    try:
        done = subprocess.run([sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(sandbox)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert (sandbox / ".logs/show/0/stdout").read_text() == "LANG=C LC_CTYPE=unset\n"
    finally:
        kill_leftovers(task_pids(sandbox))


@c_locale_starts
def test_a_cmdline_the_locale_cannot_encode_reaches_bash_as_utf8(tmp_path):
    """`LC_ALL=C PYTHONUTF8=0`: Python's file system encoding is ASCII, and `printf café`
    failed the task at its first fork with "executor internal error: UnicodeEncodeError"
    (exit 70). The config is UTF-8 text: bash gets its UTF-8 bytes, from the supervisor
    as from the early start's `posix_spawn`. The sandbox's name holds a newline: the
    `stoker run: sandbox` line said it on two lines."""
    cfg = write_config(tmp_path, """
        show = Process(name='show', cmdline='printf %s café > out')
        jobs = [Job(cluster='local', role='me', environment='test', name='utf8',
                    task=Task(processes=[show], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    sandbox = tmp_path / "sand\nbox"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    env.update({"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONPATH": str(REPO)})
    early = ("import os; from executor.procs import earlyfork; "
             "pid = earlyfork.spawn_run('printf %s caf\\u00e9 > early', dict(os.environ), stdin=0, stdout=1, "
             "stderr=2); os.waitpid(pid, 0)")
    try:
        done = subprocess.run([sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(sandbox)],
                              capture_output=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr.decode()
        assert (sandbox / "out").read_bytes() == "café".encode()
        assert done.stdout.startswith(f"stoker run: sandbox {tmp_path}/sand\\nbox\n".encode())
        subprocess.run([sys.executable, "-c", early], cwd=tmp_path, env=env, check=True, timeout=30)
        assert (tmp_path / "early").read_bytes() == "café".encode()
    finally:
        kill_leftovers(task_pids(sandbox))


def test_the_sandbox_line_writes_out_a_format_character_and_a_line_separator(tmp_path):
    """`stoker run: sandbox PATH`, "one line, whatever its name", wrote the path's right-to-left
    override and line separator as they are (`printable`): a terminal showed the rest of the
    line reversed, and a reader that splits at U+2028 (`str.splitlines`) read two lines. It
    writes them out as the log and the state lines do (`loggable`)."""
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    task=Task(processes=[Process(name='a', cmdline='true')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    sandbox = tmp_path / "sb\u202ex\u2028y"
    env = dict(os.environ, PYTHONPATH=str(REPO), STOKER_ROOT=str(tmp_path / "registry"))
    try:
        done = subprocess.run([sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(sandbox)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"stoker run: sandbox {tmp_path}/sb\\u202ex\\u2028y\n")
        assert "\u202e" not in done.stdout and "\u2028" not in done.stdout
    finally:
        kill_leftovers(task_pids(sandbox))


def test_the_announcing_line_writes_out_a_format_character_of_the_job_s_zk_path(stoker, tmp_path):
    """A ZooKeeper node name may hold a format character (ZooKeeper refuses controls, not a
    right-to-left override): `stoker run: announcing at PATH` wrote the job's zk_path as it
    is, not even `printable`, so the rest of the line read reversed. Nothing listens on the
    ensemble's port: the line comes before any connection."""
    (port,) = free_ports(1)
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    announce=Announcer(primary_port='http', zk_path='/aurora/x\\u202eyz'),
                    task=Task(processes=[Process(name='p', cmdline='echo {{thermos.ports[http]}}; sleep 60')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--announce", f"127.0.0.1:{port}")
    run.wait_output("stoker run: announcing at /aurora/x\\u202eyz in ZooKeeper ", timeout_secs=30)
    assert "\u202e" not in run.stdout()
