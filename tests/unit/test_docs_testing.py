"""docs/testing.md names what the repository has (its paths, module names and variables are
checked with the other pages', tests/unit/test_docs_names.py): every `make` target and `VAR=`
setting it gives is the Makefile's; every test module, test and class it names exists; every
pytest mark it names is registered; §1's table of `make mutation` rows is
tools/mutation_rows.py's (each slug, the files it mutates, its tests' files, how many tests of
a file it runs, whether in children or as a subreaper) and every other row is named in §4;
§6's table of harnesses is tests/fuzz/'s. docs/benchmarks.md's table of `bench/` names every
file there, each `--only NAME` of `bench/run_all.py` and no other, and only options its
scripts have.
"""
from __future__ import annotations

import builtins
import configparser
import re
import sys
from pathlib import Path

from tests.unit.test_docs_names import GONE

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "docs/testing.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
TESTS = sorted((REPO / "tests").rglob("*.py"))


def _section(number: int) -> str:
    return TEXT.split(f"\n## {number}. ")[1].split("\n## ")[0]


def _rows(section: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in section.splitlines()
            if line.startswith("| `")]


def _modules() -> list:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from mutation_rows import MODULES
    finally:
        sys.path.remove(str(REPO / "tools"))
    return MODULES


def _expanded(text: str) -> str:
    """`$(STAMP)` as the Makefile sets it (`$(VENV)/.installed`), and so on."""
    values = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", MAKEFILE, re.M))
    while "$(" in text:
        text = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], text)
    return text


def test_every_make_target_and_setting_named_is_the_makefile_s():
    targets = {_expanded(t) for t in re.findall(r"^([\w./$()-]+):", MAKEFILE, re.M)}
    named = set(re.findall(r"`make ([a-z.][\w./-]*)", TEXT)) | set(re.findall(r"^make ([a-z][\w-]*)", TEXT, re.M))
    assert {"mutation", "fuzz", "coverage", "test-pythons", "test-deps-oldest", ".venv/.installed"} <= named
    assert sorted(named - targets) == []
    settings = set(re.findall(r"^([A-Z_]+)\s*[:?]?=", MAKEFILE, re.M))
    commands = re.findall(r"\bmake [^`\n]*", TEXT)
    given = {v for c in commands for v in re.findall(r"\b([A-Z][A-Z_]+)=", c)} | set(re.findall(r"`([A-Z][A-Z_]+)=", TEXT))
    given -= {"STOKER_HYPOTHESIS_PROFILE", "STOKER_FAULTS_FULL", "STOKER_CGROUPS"}  # the tests' (test_docs_names)
    given -= {"LC_ALL"}  # the locale a checkout's tests were run under (§15)
    assert {"MUTATE", "FUZZ", "FUZZ_SECONDS", "PYTEST_ARGS", "OLDEST_TESTS", "COVERAGE_TIERS", "TEST_WORKERS"} <= given
    assert sorted(given - settings) == []


def test_every_test_module_and_test_named_exists():
    """`test_dist`, `test_planning.py`, `FILE::NAME`: a test module's name or a test's."""
    stems = {path.stem for path in TESTS}
    tests = {name for path in TESTS for name in re.findall(r"^\s*(?:async )?def (test_\w+)", path.read_text(), re.M)}
    named = set(re.findall(r"(?<![\w/])(test_\w+)", TEXT))
    assert len(named) > 100
    assert sorted(named - stems - tests) == []


# Python's and Aurora's names: importlib's, `compile`'s flag, Thermos' planner and Aurora's checker (§10).
FOREIGN_CLASSES = {"FileLoader", "ModuleSpec", "PathFinder", "PyCF_ONLY_AST", "TaskPlanner", "ThreadedHealthChecker"}


def test_every_class_named_is_defined():
    """`HealthOracle`, `Supervisor`, `WalkCut`: a class (or function) of the product, the
    tests or the tools, or Python's own."""
    code = "\n".join(p.read_text() for d in ("executor", "config", "healthcheck", "tools", "tests", "bench")
                     for p in (REPO / d).rglob("*.py"))
    named = set(re.findall(r"`([A-Z][a-z0-9]+[A-Z]\w*)`", TEXT)) - FOREIGN_CLASSES - set(dir(builtins))
    assert len(named) > 15
    assert sorted(n for n in named if not re.search(rf"^\s*(?:class|def)\s+{n}\b|^\s*{n}\s*[:=]", code, re.M)) == []


def test_every_mark_named_is_registered():
    ini = configparser.ConfigParser()
    ini.read(REPO / "pytest.ini")
    marks = {line.split(":")[0].strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()}
    named = set(re.findall(r"pytest [^`\n]*-m '?(?:not )?(\w+)", TEXT)) | set(re.findall(r"marked `(\w+)`", TEXT))
    assert "serial" in named
    assert sorted(named - marks) == []


_COUNTS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


def test_section_1_s_table_is_the_mutation_rows():
    modules = {module.slug: module for module in _modules()}
    rows = _rows(_section(1))
    assert len(rows) > 50
    for slug, _title, files, against in (row[1:5] if row[0] == "" else row[:4] for row in rows):
        module = modules[slug.strip("`")]
        plain = re.sub(r"\([^()]*\)", "", files)  # not "(the eighth round ran ... in `cgroups.py`)"
        assert {Path(f).name for f in re.findall(r"`([\w/]+\.py)`", plain)} == \
            {Path(source).name for source in module.sources}, slug
        test_files = {Path(test.split("::")[0]).name for test in module.tests}
        named = set(re.findall(r"`(?:[\w/]+/)?(test_\w+\.py)`", against))
        if named:  # "the first six of those" names none
            assert named == test_files, slug
        assert ("(children" in against, "subreaper)" in against) == (module.children, module.subreaper), slug
        said = r"\b(\w+) tests? (each )?of `([\w/]+\.py)`(?: and `([\w/]+\.py)`)?"
        for count, each, *pair in re.findall(said, against):
            for files_counted in ([{Path(f).name} for f in pair if f] if each else [{Path(f).name for f in pair if f}]):
                ran = [t for t in module.tests if "::" in t and Path(t.split("::")[0]).name in files_counted]
                assert len(ran) == int(_COUNTS.get(count, count)), (slug, count, files_counted)


def _defined(text: str) -> set[str]:
    """Functions, classes, names assigned or annotated at a line's start, `self.` attributes set,
    parameters."""
    found = re.findall(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)|^[ \t]*(\w+)[ \t]*(?::[^\n=]*)?=(?!=)"
                       r"|^[ \t]*(\w+)[ \t]*:[ \t]*\S|self\.(\w+)[ \t]*(?::[^\n=]*)?=(?!=)"
                       r"|[(,][ \t\n]*\*{0,2}(\w+)[ \t]*[:=]", text, re.M)  # and parameters
    return {name for names in found for name in names if name}


def test_each_known_equivalent_mutant_names_code_there_is():
    """§3's `function`: and `function`'s (or `old` (now `new`)) is defined in the files its row's
    module mutates (the reference for the next rounds' survivors; code that went says so: GONE)."""
    files: dict[str, set[str]] = {}
    for module in _modules():
        files.setdefault(module.title.replace("`", "").lower(), set()).update(module.sources)
    everything = [str(p.relative_to(REPO)) for d in ("executor", "config", "healthcheck") for p in (REPO / d).rglob("*.py")]
    rows = [line.strip("| ").split(" | ") for line in _section(3).splitlines()
            if line.startswith("| ") and not line.startswith(("| ---", "| module |"))]
    checked, wrong = 0, []
    for row in rows:
        pattern = r"`([A-Za-z_][\w.]*)`(?=:|'s |')|\(now `([\w.]+)`"  # "`_labels` (now `LabelText.pair`)": the new
        named = {old or now for old, now in re.findall(pattern, row[1])} - GONE - set(dir(builtins)) - {"int.from_bytes", "mmap"}
        sources = files.get(row[0].replace("`", "").lower()) or everything  # "checkpoint records and replay": all
        defined = _defined("\n".join((REPO / f).read_text() for f in sources))
        checked += len(named)
        wrong += [(row[0], n) for n in sorted(named) if n.split(".")[-1] not in defined]
    assert checked > 150
    assert wrong == []


def test_every_mutation_row_is_in_section_1_s_table_or_named_in_section_4():
    in_table = {row[0].strip("`") for row in _rows(_section(1))}
    scores = _section(4)
    assert sorted(m.slug for m in _modules() if m.slug not in in_table and f"`{m.slug}`" not in scores) == []


def test_section_6_s_table_is_the_fuzz_harnesses():
    harnesses = {path.stem.removeprefix("fuzz_") for path in (REPO / "tests/fuzz").glob("fuzz_*.py")}
    assert {row[0].strip("`") for row in _rows(_section(6))} == harnesses


def test_benchmarks_md_s_table_is_bench_s_files_names_and_options():
    bench = REPO / "bench"
    text = (REPO / "docs/benchmarks.md").read_text()
    rows = _rows(text[:text.index("\n## ")])
    named = {name for row in rows for name in re.findall(r"`(\w+\.(?:py|c))`", row[0])}
    assert named == {path.name for path in bench.iterdir() if path.suffix in (".py", ".c")}
    run_all = (bench / "run_all.py").read_text()
    benches = dict(re.findall(r'^    "(\w+)": \("(\w+\.py)"', run_all, re.M))
    assert {m.group(1): re.search(r"`(\w+\.py)`", row[0]).group(1)  # type: ignore[union-attr]
            for row in rows if (m := re.fullmatch(r"`--only (\w+)`", row[2]))} == benches
    shared = (bench / "benchlib.py").read_text()  # its `ab_parser`, the benches' common flags
    for row in rows:
        flags = set(re.findall(r"`(--[a-z-]+)", row[2])) - {"--only"}
        for name in re.findall(r"`(\w+\.py)`", row[0]):
            script = (bench / name).read_text()
            source = script + (shared if "benchlib." in script else "")
            assert sorted(f for f in flags if f'"{f}"' not in source) == [], name


def test_section_9_names_the_files_test_deps_oldest_runs():
    oldest = re.search(r"^OLDEST_TESTS \?= (.*)$", MAKEFILE, re.M).group(1).split()  # type: ignore[union-attr]
    named = set(re.findall(r"`(?:tests/integration/)?(test_codecache\w*\.py)`", _section(9)))
    assert named == {Path(p).name for p in oldest if p.endswith(".py")}
    assert "tests/unit" in oldest and "the unit tests" in _section(9)
