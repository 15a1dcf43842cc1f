"""`executor/cli/launchfirst.py`'s planning child and `json`, which it defers (pystachio
imports it for methods no plan calls): a JSON config, a config's own imports of json and its
submodules, and STOKER_CODE_CACHE=off, which loads it as Python does. Fresh interpreters, as
in test_planning.py (its `python`)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.test_planning import EXAMPLE, python


def planned_ahead(config: Path, code_cache: str = "") -> subprocess.CompletedProcess:
    """`config` planned by the child a first run forks ahead, as `stoker run` forks it (its
    modules without docstrings, STOKER_CODE_CACHE=`code_cache`): prints whether the parent
    had `json` before the fork, then the plan's job name, or the child's answer when it sent
    no plan."""
    return python("""
        import marshal
        os.environ["STOKER_CODE_CACHE"] = sys.argv[2]
        from executor import nodocs
        nodocs.install()
        from executor.cli import launchfirst
        from executor.local import plancache
        print("json" in sys.modules, flush=True)
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        answer, early = marshal.loads(ahead.answer()[0]), ahead.early_plan()
        print(plancache.decode(marshal.loads(early)).name if early else f"{answer[0]} {str(answer[1])[-300:]}")
    """, str(config), code_cache)


def named_by(code: str) -> str:
    """The example's config run after `code`, with its job named by `code`'s `name`."""
    return code + "\n" + EXAMPLE.read_text().replace("name = 'hello'", "name = name")


@pytest.mark.parametrize("text, first", [
    ('{"jobs": [{"cluster": "c", "role": "r", "environment": "e", "name": "j", "task": {"name": "t", '
     '"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}]}', "j"),
    ('{"jobs": [1, }', "error"),
])
def test_a_json_config_planned_ahead_loads_json_in_the_child_that_deferred_it(tmp_path, text, first):
    # the child makes `json` lazy (pystachio imports it, no plan reads it), which the parent has
    # not loaded before its fork: a JSON config's loader reads it, and the module then loads
    config = tmp_path / "job.json"
    config.write_text(text)
    done = planned_ahead(config)
    lines = done.stdout.splitlines()
    assert lines[0] == "False" and lines[1].split(" ")[0] == first, done.stderr
    if first == "error":
        assert "not valid JSON: Expecting value" in lines[1], lines


@pytest.mark.parametrize("imports", [
    "import json.decoder", "from json import decoder", "import json.scanner", "import json.encoder",
    "import json.tool", "from json.decoder import JSONDecodeError",
])
def test_a_config_that_imports_a_json_submodule_is_planned_ahead_as_python_runs_it(tmp_path, imports):
    # the child defers `json`: a config's `import json.decoder` (whose code imports from the
    # package) was an ImportError there ("partially initialized module 'json.decoder'"), planned
    # at once as `stoker inspect` and a re-run plan it; its JSONDecodeError is the one json raises
    config = tmp_path / "job.aurora"
    config.write_text(named_by(f"{imports}\nimport json\n"
                               "try:\n    json.loads('{')\nexcept json.decoder.JSONDecodeError:\n    name = 'caught'"))
    done = planned_ahead(config)
    assert done.stdout == "False\ncaught\n", (done.stdout, done.stderr)


@pytest.mark.parametrize("code_cache, deferred", [("off", False), ("", True)])
def test_with_the_code_cache_off_the_child_loads_json_as_python_does(tmp_path, code_cache, deferred):
    # STOKER_CODE_CACHE=off loads every module as Python would (`executor/deferred.py`): a
    # config's `vars(json)` then holds json's names; deferred, only the few its stand-in has
    config = tmp_path / "job.aurora"
    config.write_text(named_by("import json\nname = str('dumps' in vars(json))"))
    done = planned_ahead(config, code_cache)
    assert done.stdout == f"False\n{not deferred}\n", (done.stdout, done.stderr)
