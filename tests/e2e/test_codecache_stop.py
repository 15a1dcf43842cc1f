"""The code cache an installer writes (`python -m executor.codecache`) holds what a command
compiles at its stop too, not only at its start (importcut).

The kill's machine (`executor.task.kill`, five attrs classes) loads with a task's first kill
request, after the first report; a warm step that imported only a command's start modules
left its classes out of the file. Every stopped `stoker run` then compiled them as it was
stopped and wrote the file again at its exit (`codecache.save()`), and one that could not
write it (an installation its users cannot write to) compiled them at every stop; under an
address-space limit that save's read of the whole file was a MemoryError, a traceback and
exit 1 after the task had ended KILLED. And compiling them takes memory a stop took none of
before: a `stoker run` whose address space was full (`ulimit -v` reached) as it was stopped
ended its task FAILED, "the task could not go on: no memory could be had", exit 2, with a
traceback of the reaper's, where its processes were stopped and the task KILLED before.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor import codecache
from tests.e2e.test_startup_imports import SLEEPER, run_job
from tests.support.stoker_proc import REPO, kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


KILL = "executor.task.kill."  # in the generated methods' file names: `<attrs generated methods MODULE.CLASS>`


def cache_file(directory: Path, profile: str) -> Path:
    return directory / f"attrs-{profile}.{sys.implementation.cache_tag}.bin"


def warmed(tmp_path: Path) -> dict[str, str]:
    """A code cache directory of the test's own, its `run` file written as an installer
    writes it; the environment that points `stoker run` at it."""
    cache = tmp_path / "codecache"
    cache.mkdir(mode=0o700)
    env = {"STOKER_CODE_CACHE": str(cache)}
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a save would not write
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "run"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**clean, "PYTHONPATH": str(REPO), **env})
    assert warm.returncode == 0, warm.stderr
    return env


def test_a_stopped_stoker_run_compiles_nothing_the_warm_step_wrote_the_file_without(tmp_path):
    env = warmed(tmp_path)
    path = cache_file(Path(env["STOKER_CODE_CACHE"]), "run")
    written = set(codecache._read(path))
    assert [name for name in written if KILL in name], sorted(written)  # the kill's machine: its classes
    run_job(tmp_path, textwrap.dedent(SLEEPER.format(extra="", logger="")), env=env)  # RUNNING, then SIGTERM
    assert "KILLED" in (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()[-3000:]
    assert sorted(set(codecache._read(path)) - written) == []  # nothing compiled as it was stopped


# glibc's heap as the start's end leaves it at worst (`earlyfork.trim_heap`: no free room):
# every block of 4 KiB or more (a 64 KiB read's buffer, an obmalloc arena) mapped afresh.
FRESH_PAGES = "glibc.malloc.mmap_threshold=4096"


def test_a_stoker_run_stopped_with_its_address_space_full_stops_its_task_as_ever(tmp_path):
    """Its address space full (`ulimit -v` at what it has mapped, once the start has ended:
    `held.json` is written at the end of a step, after the port's idle trimmed the heap and
    kept the stop's room), a SIGTERM stops its task KILLED, exit 143, as ever (it ended
    FAILED: a cgroup file's 64 KiB read buffer, a MemoryError)."""
    env = warmed(tmp_path)
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(SLEEPER.format(extra="", logger="")))
    sandbox, out, err = tmp_path / "sandbox", tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "executor", "run", str(config), "--sandbox", str(sandbox)],
            cwd=tmp_path, stdout=o, stderr=e, stdin=subprocess.DEVNULL, start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
                 "STOKER_ROOT": str(tmp_path / "registry"), "GLIBC_TUNABLES": FRESH_PAGES, **env})
    try:
        wait_for(lambda: "sleeper[0]" in out.read_text() and "RUNNING" in out.read_text()
                 and (sandbox / ".stoker" / "held.json").exists() or proc.poll() is not None, 60,
                 message="the process RUNNING, the start ended")
        assert proc.poll() is None, err.read_text()[-3000:]
        with open(f"/proc/{proc.pid}/status") as status:
            mapped = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) << 10
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (mapped, resource.RLIM_INFINITY))  # nothing more mapped
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        pids = task_pids(sandbox)
        kill_leftovers(pids)
    assert status == 128 + signal.SIGTERM, err.read_text()[-3000:]
    assert "task             KILLING → KILLED  stopped by SIGTERM" in out.read_text(), out.read_text()[-3000:]
    assert pids and not live(pids), pids
