"""`stoker run` keeps the plan of a closed config (executor/local/plancache.py) and a re-run of
the unchanged file uses it: same behaviour, same ports when free, a new task id per attempt;
an edited file, or one that reads the environment, is planned afresh; a second run of a
config while the first is up plans with ports of its own."""
from __future__ import annotations

import os
import re
import socket
import textwrap
from pathlib import Path

import pytest

from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids

ECHO = """
    jobs = [Job(cluster='local', role='me', environment='test', name='planned',
                task=Task(processes=[Process(name='say', cmdline='echo {word} {{{{thermos.ports[http]}}}} {{{{thermos.task_id}}}}')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


@pytest.fixture
def run(tmp_path):
    """`stoker run CONFIG` to its end in a sandbox of its own, with a plan cache of the test's."""
    cache = tmp_path / "plans"
    done: list[Path] = []

    def start(config: Path, *args: str, env: dict[str, str] | None = None,
              code: int = 0) -> tuple[StokerProcess, Path]:
        sandbox = tmp_path / f"sandbox{len(done)}"
        done.append(sandbox)
        proc = StokerProcess(["run", str(config), *args, "--sandbox", str(sandbox)], tmp_path,
                             env={"STOKER_PLAN_CACHE": str(cache), **(env or {})})
        return proc.exited(code), sandbox

    start.cache = cache  # type: ignore[attr-defined]
    yield start
    for sandbox in done:
        kill_leftovers(task_pids(sandbox))


def write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(text))
    return config


def kept_plans(cache: Path) -> list[str]:
    """The plans kept in `cache` (each beside the lock file its runs hold)."""
    return sorted(name for name in os.listdir(cache) if name.endswith(".bin"))


def said(sandbox: Path, logs: str = ".logs") -> list[str]:
    return (sandbox / logs / "say/0/stdout").read_text().split()


def test_a_rerun_uses_the_kept_plan_with_the_same_ports_and_a_new_task_id(run, tmp_path):
    config = write(tmp_path, ECHO.format(word="hello"))
    first, sandbox1 = run(config)
    assert len(kept_plans(run.cache)) == 1
    kept = kept_plans(run.cache)
    again, sandbox2 = run(config)
    ports = re.findall(r"stoker run: ports (http=\d+)", first.stdout() + again.stdout())
    assert len(ports) == 2 and ports[0] == ports[1]
    word1, port1, id1 = said(sandbox1)
    word2, port2, id2 = said(sandbox2)
    assert (word1, port1) == (word2, port2) == ("hello", ports[0].split("=")[1])
    assert id1 != id2 and all(re.fullmatch(r"planned-0-[0-9a-f]{8}", i) for i in (id1, id2))
    assert kept_plans(run.cache) == kept


def test_an_edited_config_runs_its_new_commands(run, tmp_path):
    config = write(tmp_path, ECHO.format(word="before"))
    run(config)
    config.write_text(textwrap.dedent(ECHO.format(word="after")))
    _, sandbox = run(config)
    assert said(sandbox)[0] == "after"


def test_a_config_that_reads_the_environment_is_loaded_each_run(run, tmp_path):
    config = write(tmp_path, "import os\n" + textwrap.dedent(ECHO.format(word="{{word}}")).replace(
        "jobs = [", "jobs = [j.bind(word=os.environ['WORD']) for j in [").replace(
        "1*MB)))]", "1*MB)))]]"))
    _, sandbox1 = run(config, env={"WORD": "one"})
    _, sandbox2 = run(config, env={"WORD": "two"})
    assert [said(sandbox1)[0], said(sandbox2)[0]] == ["one", "two"]
    assert kept_plans(run.cache) == []


def test_each_attempt_of_a_kept_plan_has_a_task_id_of_its_own(run, tmp_path):
    config = write(tmp_path, ECHO.format(word="x").replace(
        "name='planned',", "name='planned', max_task_failures=2,").replace("}}')]", "}}; exit 1')]"))
    run(config, "--restart-backoff", "0.05", code=1)  # planned and kept
    _, sandbox = run(config, "--restart-backoff", "0.05", code=1)  # the kept plan, twice
    first, second = said(sandbox, ".logs.attempt-0"), said(sandbox)
    assert first[:2] == second[:2] and first[2] != second[2]
    assert all(re.fullmatch(r"planned-0-[0-9a-f]{8}", words[2]) for words in (first, second))


def test_two_live_runs_of_one_config_never_share_its_ports(tmp_path):
    config = write(tmp_path, ECHO.format(word="x").replace("echo", "sleep 1000; echo"))
    env = {"STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    runs: list[StokerProcess] = []
    try:
        for i in range(2):  # the second while the first is up: its sleep has bound nothing
            (tmp_path / f"w{i}").mkdir()
            runs.append(StokerProcess(["run", str(config), "--sandbox", str(tmp_path / f"live{i}")],
                                      tmp_path / f"w{i}", env=env))
            runs[i].wait_output("say[0]           WAITING → RUNNING", timeout_secs=30)
        ports = [re.findall(r"stoker run: ports http=(\d+)", r.stdout()) for r in runs]
        assert len(ports[0]) == len(ports[1]) == 1 and ports[0] != ports[1]
    finally:
        for i, r in enumerate(runs):
            r.close()
            kill_leftovers(task_pids(tmp_path / f"live{i}"))


def test_the_config_runs_apart_so_what_it_changes_never_reaches_the_task(run, tmp_path):
    # The umask is the process's own and every child inherits it: set by a config run in
    # the supervisor, it would reach the task's processes.
    config = write(tmp_path, "import os\nos.umask(0o027)\n" + textwrap.dedent(
        ECHO.format(word="$(umask)")))
    mine = os.umask(0o022)
    os.umask(mine)
    assert mine != 0o027
    _, sandbox = run(config)
    assert said(sandbox)[0] == f"{mine:04o}"  # the config's process is not the supervisor's


def test_a_run_that_can_keep_no_plan_says_why_once(run, tmp_path):
    """With no place for plans (a relative STOKER_PLAN_CACHE; HOME missing and no home of
    the user's own in the password database), `stoker run` planned each run afresh, slower,
    without a word."""
    proc, sandbox = run(write(tmp_path, ECHO.format(word="hi")), env={"STOKER_PLAN_CACHE": "plans-here"})
    lines = [line for line in proc.stderr().splitlines() if "plan_not_kept" in line]
    assert len(lines) == 1 and "STOKER_PLAN_CACHE (plans-here) is not an absolute path" in lines[0], proc.stderr()
    assert said(sandbox)[0] == "hi" and not (tmp_path / "plans-here").exists()


def test_a_kept_port_another_program_holds_on_ipv6_loopback_only_is_planned_afresh(run, tmp_path):
    """The kept plan's port is free on 127.0.0.1 but held on [::1] (IPV6_V6ONLY): the re-run
    (its early start, then the run itself) finds it not free on both, and plans a new port;
    the task's checks would have reached the other program there (docs/contract.md §7)."""
    config = write(tmp_path, ECHO.format(word="hello"))
    first, _ = run(config)
    [port] = re.findall(r"stoker run: ports http=(\d+)", first.stdout())
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            other.bind(("::1", int(port)))
        except OSError as exc:
            pytest.skip(f"no [::1]:{port} to hold here: {exc}")
        other.listen()
        again, sandbox = run(config)
    [moved] = re.findall(r"stoker run: ports http=(\d+)", again.stdout())
    assert moved != port and said(sandbox)[:2] == ["hello", moved]
    assert "in use" not in again.stdout(), again.stdout()
