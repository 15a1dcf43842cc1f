"""Every thread Stoker starts is started through `executor.logs.start_thread` (the health loop
is handed it), as a source check.

Under an address-space limit (ulimit -v) a `Thread.start()` that bypasses it can wait for good
for a thread the kernel made but that died before it ran any Python (executor/logs.py); one
start that bypasses it is enough to hang `stoker run` (a review found the reaper's). The
check: in executor/, healthcheck/ and config/, no `.start()` is called on a thread made there
(`threading.Thread(...)` or `threading.Timer(...)`, by the name it was bound to, the last part
of a dotted one, or chained), and no class of its own is a Thread (its `start()` could not be
told apart).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THREAD_CLASSES = {"Thread", "Timer"}


def _makes_thread(node: ast.AST) -> bool:
    """Whether `node` is `threading.Thread(...)`, `threading.Timer(...)` or the bare names."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name in THREAD_CLASSES


def _last_name(node: ast.AST) -> str | None:
    """`self._thread` -> '_thread', `thread` -> 'thread'; None for anything else."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def bypassing_starts(path: Path, root: Path) -> list[str]:
    """The lines of `path` that start a thread made there other than by `start_thread`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    threads: set[str] = set()  # the names threads made here are bound to
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and _makes_thread(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            threads.update(name for target in targets if (name := _last_name(target)))
    where = path.relative_to(root)
    problems = []
    inside = {id(node) for helper in ast.walk(tree)  # the one start that is start_thread's own
              if isinstance(helper, ast.FunctionDef) and helper.name == "start_thread"
              for node in ast.walk(helper)}
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.ClassDef) and any(_last_name(base) in THREAD_CLASSES for base in node.bases):
            problems.append(f"{where}:{node.lineno}: class {node.name} is a Thread of its own")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "start"):
            continue
        receiver = node.func.value
        if _makes_thread(receiver) or _last_name(receiver) in threads:
            problems.append(f"{where}:{node.lineno}: {ast.unparse(node)} (not through start_thread)")
    return problems


def every_bypass(root: Path) -> list[str]:
    problems = []
    for package in ("executor", "healthcheck", "config"):
        for path in sorted((root / package).rglob("*.py")):
            problems += bypassing_starts(path, root)
    return problems


def test_every_thread_stoker_starts_goes_through_start_thread():
    assert every_bypass(ROOT) == []


def test_the_starts_through_start_thread_are_the_ones_seen():
    """The check sees the real starts: each file that makes a thread calls start_thread."""
    makers = [path for package in ("executor", "healthcheck")
              for path in sorted((ROOT / package).rglob("*.py"))
              if any(_makes_thread(node) for node in ast.walk(ast.parse(path.read_text())))]
    assert len(makers) >= 15, makers
    assert [str(p.relative_to(ROOT)) for p in makers if "start_thread(" not in p.read_text()] == []


def test_a_planted_start_that_bypasses_it_is_caught(tmp_path):
    planted = {
        "executor/procs/chained.py": "import threading\nthreading.Thread(target=print).start()\n",
        "executor/host/bound.py": ("import threading\nclass A:\n    def go(self):\n"
                                   "        self._worker = threading.Thread(target=print)\n"
                                   "        self._worker.start()\n"),
        "healthcheck/timer.py": "import threading\nt = threading.Timer(1.0, print)\nt.start()\n",
        "config/own.py": "import threading\nclass Mine(threading.Thread):\n    pass\n",
        "executor/task/fine.py": ("import threading\nfrom executor.logs import start_thread\n"
                                  "t = threading.Thread(target=print)\nstart_thread(t)\nother.start()\n"),
        "executor/helper.py": ("import threading\ndef start_thread(thread):\n    thread.start()\n"
                               "thread = threading.Thread(target=print)\n"),
    }
    for name, text in planted.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = every_bypass(tmp_path)
    assert [line.split(":")[0] for line in found] == [
        "executor/host/bound.py", "executor/procs/chained.py", "healthcheck/timer.py", "config/own.py"], found


def kazoo_clients_without_a_handler(root: Path) -> list[str]:
    """The `KazooClient(...)` calls in executor/ given no `handler=`: kazoo's default handler
    starts its threads (its connection's, two workers') with a bare `Thread.start()`."""
    problems = []
    for path in sorted((root / "executor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and _last_name(node.func) == "KazooClient"
                    and not any(keyword.arg == "handler" for keyword in node.keywords)):
                problems.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node.func)}(...) without handler=")
    return problems


def test_kazoos_threads_start_through_start_thread_too():
    """Was: the announcer's kazoo client started three threads past the check (a hang of
    `stoker executor`'s owner under ulimit -v, as the reaper's was)."""
    assert kazoo_clients_without_a_handler(ROOT) == []
