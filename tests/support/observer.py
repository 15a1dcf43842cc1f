"""A real `stoker observe` and real `stoker run` tasks in a private registry, for the
observer's API and browser tests.

`ObservedHost(tmp)` starts `stoker run`s (`run(config, *flags)`, waiting until the task runs) and
one `stoker observe --port 0` on the same registry, reads the URL it prints, and fetches
from it (`get`, `json`) with a deadline. `close()` stops everything it started and kills
whatever the tasks left.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids


def config(directory: Path, name: str, processes: dict[str, str]) -> Path:
    """A service job NAME whose processes run the given command lines."""
    procs = ", ".join(f"Process(name={p!r}, cmdline={c!r}, min_duration=30)"
                      for p, c in processes.items())
    path = directory / f"{name}.aurora"
    path.write_text(textwrap.dedent(f"""
        jobs = [Service(cluster='local', role='me', environment='test', name={name!r},
                        task=Task(processes=[{procs}],
                                  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                  finalization_wait=2))]
    """))
    return path


class ObservedHost:
    def __init__(self, tmp: Path) -> None:
        self.tmp = Path(tmp)
        self.root = self.tmp / "registry"
        self.env = {"STOKER_ROOT": str(self.root)}
        self.runs: list[StokerProcess] = []
        self.observer: StokerProcess | None = None
        self.url = ""

    def run(self, config_path: Path, *flags: str) -> StokerProcess:
        workdir = self.tmp / f"run{len(self.runs)}"
        workdir.mkdir(parents=True)
        proc = StokerProcess(["run", str(config_path), *flags], workdir, env=self.env)
        self.runs.append(proc)
        out = proc.wait_output("task             STARTING → RUNNING", timeout_secs=30)
        proc.sandbox = Path(out.split("stoker run: sandbox ", 1)[1].split("\n", 1)[0])
        return proc

    def observe(self, *flags: str) -> str:
        workdir = self.tmp / "observer"
        workdir.mkdir(parents=True, exist_ok=True)
        self.observer = StokerProcess(["observe", "--port", "0", "--root", str(self.root), *flags],
                                      workdir, env=self.env)
        out = self.observer.wait_output("stoker observe: http://", timeout_secs=30)
        self.url = out.split("stoker observe: ", 1)[1].split(" ", 1)[0].rstrip("/")
        return self.url

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def stoker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO), **self.env)
        return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True,
                              text=True, timeout=60, env=env, cwd=self.tmp)

    def close(self) -> None:
        if self.observer is not None:
            self.observer.close()
        for proc in self.runs:
            proc.close()
            if getattr(proc, "sandbox", None):
                kill_leftovers(task_pids(proc.sandbox))
