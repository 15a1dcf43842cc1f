"""The code the docs name is the code there is: every repository path the README,
docs/contract.md, docs/mesos.md, docs/aurora.md, docs/design.md and docs/testing.md name
exists (a test support module's `tests/support/ports.free_ports` is defined there), every
module file they name by itself is one of Stoker's (or Aurora's, listed below), every
`module.name` and `Class.member` they name is defined there, every `STOKER_*` and `MESOS_*`
variable they name is one the code reads (for docs/testing.md: the code or the tests), and
every module that looks a `MESOS_*` variable up by name is one docs/mesos.md §14 names.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/contract.md", "docs/mesos.md", "docs/aurora.md", "docs/design.md", "docs/testing.md")
TEXT = {page: (REPO / page).read_text() for page in PAGES}
PACKAGES = ("executor", "config", "healthcheck")
SOURCES = {path: path.read_text() for package in PACKAGES + ("tools",)
           for path in sorted((REPO / package).rglob("*.py"))}

# Aurora's and Thermos' own files, which docs/aurora.md names as what Stoker follows, and a
# job's own file (docs/contract.md §8, "Python's own settings").
FOREIGN_FILES = {"aurora_executor.py", "http_example.py", "resource_manager.py", "task_info.py",
                 "thermos_executor_main.py", "thermos_task_runner.py", "thermos_runner.py", "config.py"}
# Fields of Mesos' JSON and of the task document whose first word is also one of Stoker's
# module names (docs/mesos.md §9, docs/contract.md §2).
FIELDS = {"kill.task_id", "launch.task", "task.container"}
FILE_ENDINGS = {"py", "json", "jsonl", "lock", "sock", "toml", "md", "aurora", "pyz"}
# Variables the pages name that no product code reads: a test's (README, "Tests") and the
# one docs/mesos.md §14 says the agent does not set.
NOT_READ = {"STOKER_AURORA_EXAMPLES", "MESOS_AGENT_PID"}
# Code docs/testing.md records as removed (a mutant designed away, §3; dead code, §14).
GONE = {"ServiceRules.runs", "identity.group_name", "saferead.tail_start", "refs._holds_template",
        "Reader._entry"}

PATH = re.compile(r"(?<![\w/.-])(?:executor|config|healthcheck|tests|tools)/[\w./-]*\w\*?")
MODULE_FILE = re.compile(r"`([a-z_0-9]+\.py)`")
DOTTED = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(\))?`")


def _stems() -> dict[str, list[Path]]:
    stems: dict[str, list[Path]] = {}
    for path in SOURCES:
        stems.setdefault(path.parent.name if path.name == "__init__.py" else path.stem, []).append(path)
    return stems


def _is_module(path: str) -> bool:
    return (REPO / f"{path}.py").is_file() or (REPO / path / "__init__.py").is_file()


def _module(path: str) -> Path:
    return REPO / f"{path}.py" if (REPO / f"{path}.py").is_file() else REPO / path / "__init__.py"


def _defines(path: Path, name: str) -> bool:
    text = SOURCES[path] if path in SOURCES else path.read_text()  # a test support module's
    served = re.search(r"^def __getattr__\(", text, re.M) and f'"{name}"' in text  # `cgroups.FREEZER`
    return bool(served) or re.search(rf"^(?:def|class|async def)\s+{name}\b|^{name}\s*[:=]", text, re.M) is not None


CLASSES: dict[str, list[Path]] = {}  # a class's name -> the files that define one of that name
for _path, _text in SOURCES.items():
    for _name in re.findall(r"^\s*class\s+(\w+)", _text, re.M):
        CLASSES.setdefault(_name, []).append(_path)


def _has_member(cls: str, name: str) -> bool:
    holders = CLASSES.get(cls, [])
    return any(re.search(rf"\bdef\s+{name}\b|^\s+{name}\s*[:=]|self\.{name}\b", SOURCES[p], re.M) for p in holders)


def _path_exists(path: str) -> bool:
    """A file or directory; a module without its `.py`; a glob (`tests/integration/test_codecache*.py`,
    `tests/fuzz/fuzz_NAME.py`); a support module's name (`tests/support/users.stoker_as`)."""
    if "*" in path or "NAME" in path:
        return any(REPO.glob(path.replace("NAME", "*")))
    if (REPO / path).exists() or (REPO / f"{path}.py").is_file():
        return True
    module, _, name = path.rpartition(".")
    return (REPO / f"{module}.py").is_file() and re.search(
        rf"^(?:def|class)\s+{name}\b|^{name}\s*[:=]", (REPO / f"{module}.py").read_text(), re.M) is not None


@pytest.mark.parametrize("page", PAGES)
def test_every_repository_path_named_exists(page):
    missing = sorted({p for p in PATH.findall(TEXT[page]) if not _path_exists(p.rstrip("."))})
    assert missing == [], f"{page} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_every_module_file_named_is_stokers(page):
    files = {path.name for path in REPO.rglob("*.py") if ".venv" not in path.parts}
    missing = sorted(set(MODULE_FILE.findall(TEXT[page])) - files - FOREIGN_FILES)
    assert missing == [], f"{page} names module files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_every_module_name_and_class_member_named_is_defined(page):
    stems, checked, wrong = _stems(), 0, []
    for token in sorted(set(DOTTED.findall(TEXT[page])) - FIELDS - GONE):
        *head, last = token.split(".")
        if last in FILE_ENDINGS or _is_module("/".join(head + [last])):
            continue
        if _is_module("/".join(head)):
            checked += 1
            if not _defines(_module("/".join(head)), last):
                wrong.append(token)
        elif head[-1] in stems:
            checked += 1
            if not any(_defines(path, last) for path in stems[head[-1]]):
                wrong.append(token)
        elif head[-1] in CLASSES:
            checked += 1
            if not _has_member(head[-1], last):
                wrong.append(token)
    assert wrong == [], f"{page} names what its module or class does not define: {wrong}"
    assert page != "docs/testing.md" or GONE <= set(DOTTED.findall(TEXT[page])), "GONE names no longer named"
    assert checked >= (30 if page == "docs/design.md" else 0), checked


@pytest.mark.parametrize("page", PAGES)
def test_every_name_given_after_its_module_file_is_defined_there(page):
    """"`procs/earlyfork.py` `spawn_in`", "`identity.py`'s `of_this_host`"."""
    wrong = []
    for file, name in re.findall(r"`([\w/]+\.py)`(?:'s)? `([A-Za-z_]\w*)`", TEXT[page]):
        paths = [p for p in SOURCES if str(p.relative_to(REPO)) == file or str(p).endswith("/" + file)]
        if not any(re.search(rf"^\s*(?:def|class)\s+{name}\b|^{name}\s*[:=]", SOURCES[p], re.M) for p in paths):
            wrong.append(f"{file} {name}")
    assert wrong == [], f"{page} names what its module does not define: {wrong}"


@pytest.mark.parametrize("page", PAGES)
def test_every_variable_named_is_read(page):
    code = "\n".join(SOURCES.values()) + ("\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py"))
                                          if page == "docs/testing.md" else "")
    named = set(re.findall(r"\b((?:STOKER|MESOS)_[A-Z0-9_]*[A-Z0-9])\b", TEXT[page])) - NOT_READ
    assert sorted(n for n in named if not re.search(rf"\b{n}\b", code)) == []


def test_every_module_that_looks_up_a_mesos_variable_is_in_mesos_md_14():
    """docs/mesos.md §14 says where the agent's variables are read: config/executorsettings.py,
    and the modules it names besides (it said "only" that one while agentroute.py read the
    unix socket's and executor.py MESOS_DIRECTORY)."""
    section = TEXT["docs/mesos.md"].split("## 14. ")[1].split("\n## ")[0]
    lookups = re.compile(r"""\.get\(\s*["']MESOS_\w+""")
    readers = sorted(str(p.relative_to(REPO)) for p, text in SOURCES.items() if lookups.search(text))
    assert len(readers) >= 3, readers
    assert [r for r in readers if f"`{r}`" not in section] == []
