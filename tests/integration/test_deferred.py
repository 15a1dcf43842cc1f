"""`executor.deferred`: modules that load at their first use, in real interpreters.

Each case runs a fresh Python that defers a small module of the test's own (or LAZY, with
attrs and the supervisor's modules), imports it and uses it; what ran and when is printed
as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor.deferred import LAZY
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)


# What every probe starts with: `runs()`, how many times lazymod's code ran, and
# `failed_load()`, lazymod deferred and read once with its load made to fail: the module and
# the error its read raised (None: it raised none).
PRELUDE = """\
import json, os, sys
from executor import deferred
def runs():
    p = os.environ['RAN_LOG']
    return open(p).read().count('ran') if os.path.exists(p) else 0
def failed_load():
    os.environ["LAZY_FAILS"] = "1"
    deferred.defer(("lazymod",))
    import lazymod
    try:
        lazymod.ANSWER
    except RuntimeError as exc:
        return lazymod, str(exc)
    return lazymod, None
"""


def probe(tmp_path: Path, code: str) -> dict:
    (tmp_path / "lazymod.py").write_text(textwrap.dedent("""\
        import os
        RAN = os.environ["RAN_LOG"]
        with open(RAN, "a") as log:
            log.write("ran\\n")
        if os.environ.get("LAZY_FAILS"):
            raise RuntimeError("the module's own error")
        ANSWER = 42
        """))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}", "RAN_LOG": str(tmp_path / "ran.log"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    prelude = PRELUDE
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_deferred_module_runs_at_its_first_read_once(tmp_path):
    seen = probe(tmp_path, """
        made = deferred.defer(("json", "no_such_module_here", "no_such_package.sub", "lazymod"))
        import lazymod
        try:
            lazymod.__path__  # what `from lazymod import X` looks for first: no package
        except AttributeError as exc:
            path = [str(exc), exc.name, exc.obj is lazymod]
        imported = runs()
        from lazymod import ANSWER
        again = lazymod.ANSWER
        print(json.dumps({"made": made, "imported": imported, "after": runs(), "answer": [ANSWER, again],
                          "loaded": deferred.is_loaded("lazymod"), "type": type(lazymod) is type(sys),
                          "hook": "__getattr__" in vars(lazymod), "path": path}))
        """)
    assert seen["made"] == ["lazymod"]  # one loaded already, two not found: left as they are
    assert seen["imported"] == 0  # `import` alone ran nothing, nor a read of __path__
    assert seen["path"] == ["module 'lazymod' has no attribute '__path__'", "__path__", True]
    assert seen["after"] == 1 and seen["answer"] == [42, 42]
    assert seen["loaded"] and seen["type"] and not seen["hook"]


def test_a_deferred_module_whose_load_failed_loads_at_the_next_read(tmp_path):
    seen = probe(tmp_path, """
        lazymod, first = failed_load()
        still = [sys.modules.get("lazymod") is lazymod, deferred.is_loaded("lazymod")]
        del os.environ["LAZY_FAILS"]
        print(json.dumps({"first": first, "still": still, "then": lazymod.ANSWER, "runs": runs(),
                          "loaded": deferred.is_loaded("lazymod")}))
        """)
    assert seen == {"first": "the module's own error", "still": [True, False], "then": 42, "runs": 2,
                    "loaded": True}


def test_the_supervisors_modules_import_the_deferred_modules_and_read_none(tmp_path):
    seen = probe(tmp_path, """
        from executor import nodocs
        nodocs.install()
        made = deferred.defer()
        from executor import codecache
        codecache.install("run")
        import executor.cli.main, executor.local.run
        print(json.dumps({"made": made, "loaded": sorted(m for m in made if deferred.is_loaded(m)),
                          "children": sorted(m for m in ("ast", "dis", "opcode") if m in sys.modules)}))
        """)
    assert seen["made"] == list(LAZY)  # none loaded before the entry point defers them
    assert seen["loaded"] == [] and seen["children"] == []  # and none read as they load


def test_attrs_loads_and_makes_classes_without_inspect(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer()
        import attrs

        def to_int(value: str) -> int:
            return int(value)

        @attrs.define
        class Plain:
            count: int = attrs.field(converter=to_int)

        plain = Plain("7")
        without = sorted(m for m in ("inspect", "ast", "dis") if deferred.is_loaded(m))
        annotation = Plain.__init__.__annotations__["count"].__name__

        @attrs.define
        class Builtin:
            size: int = attrs.field(converter=int)

        print(json.dumps({"value": plain.count, "annotation": annotation, "without": without,
                          "builtin": Builtin("3").size, "then": deferred.is_loaded("inspect")}))
        """)
    assert seen["without"] == []  # attrs and a class with a plain converter: no inspect, ast, dis
    assert seen["value"] == 7 and seen["annotation"] == "str"  # the converter's first annotation
    assert seen["builtin"] == 3 and seen["then"]  # a builtin converter: attrs' own, through inspect


# the reader's read, mid-load: a name the module has not set yet, or a function it has
# defined already whose globals are not there yet (it read the namespace half filled: NameError)
@pytest.mark.parametrize("read", ["slowmod.ANSWER", "slowmod.answer()"])
def test_a_thread_reading_while_another_loads_waits_for_the_load(tmp_path, read):
    (tmp_path / "gate.py").write_text("import threading\nentered = threading.Event()\nrelease = threading.Event()\n")
    (tmp_path / "slowmod.py").write_text("import gate\ndef answer():\n    return ANSWER\n"
                                         "gate.entered.set()\ngate.release.wait(60)\nANSWER = 42\n")
    seen = probe(tmp_path, f"""
        import threading, time
        deferred.defer(("slowmod",))
        import gate, slowmod
        got = {{}}

        def read(who, reading):
            try:
                got[who] = reading()
            except (AttributeError, NameError) as exc:
                got[who] = str(exc)

        loader = threading.Thread(target=read, args=("loader", lambda: slowmod.ANSWER))
        loader.start()
        gate.entered.wait(60)  # the loader runs the module's code, held at the gate
        reader = threading.Thread(target=read, args=("reader", lambda: {read}))
        reader.start()
        deadline = time.monotonic() + 60  # until the reader waits for the load, or has read
        while reader.is_alive() and time.monotonic() < deadline and (
                sys._current_frames().get(reader.ident) is None
                or sys._current_frames()[reader.ident].f_code.co_name not in ("__getattr__", "__getattribute__")):
            time.sleep(0.01)
        gate.release.set()
        loader.join(60)
        reader.join(60)
        print(json.dumps(got))
        """)
    assert seen == {"loader": 42, "reader": 42}  # not "has no attribute 'ANSWER'" mid-load


def test_a_read_of_the_loading_thread_itself_is_an_attribute_error(tmp_path):
    (tmp_path / "selfread.py").write_text("import sys\ntry:\n    sys.modules[__name__].LATER\nexcept AttributeError as exc:\n"
                                          "    EARLY = [str(exc), exc.name, exc.obj is sys.modules[__name__]]\nLATER = 1\n")
    seen = probe(tmp_path, """
        deferred.defer(("selfread",))
        import selfread
        print(json.dumps([selfread.EARLY, selfread.LATER, deferred.is_loaded("selfread")]))
        """)
    assert seen == [["partially initialized module 'selfread' has no attribute 'LATER' (read while it loads)",
                     "LATER", True], 1, True]  # as a partly imported module answers: no deadlock, no recursion


def test_a_deferred_module_reloaded_is_loaded_and_runs_no_more(tmp_path):
    seen = probe(tmp_path, """
        import importlib
        deferred.defer(("lazymod",))
        import lazymod
        importlib.reload(lazymod)  # its code runs, by import's own loader
        reloaded = [runs(), deferred.is_loaded("lazymod")]
        missing = hasattr(lazymod, "NOT_THERE")
        print(json.dumps({"reloaded": reloaded, "missing": missing, "runs": runs(), "answer": lazymod.ANSWER}))
        """)
    assert seen == {"reloaded": [1, True], "missing": False, "runs": 1, "answer": 42}  # not a second run


def test_a_failed_load_leaves_none_of_its_names(tmp_path):
    seen = probe(tmp_path, """
        lazymod, _ = failed_load()
        print(json.dumps(sorted(n for n in vars(lazymod) if not n.startswith("__"))))
        """)
    assert seen == []  # not RAN and os, set before it raised: a read of them would not load it


def test_an_exception_logged_with_no_descriptor_left_keeps_its_traceback(tmp_path):
    seen = probe(tmp_path, """
        from executor import nodocs
        nodocs.install()
        deferred.defer()  # as the entry point: what a supervisor imports, then descriptors run out
        from executor import codecache
        codecache.install("run")
        import executor.cli.main, executor.local.run
        import contextlib, io, logging, resource
        from executor.cli.logsetup import TextFormatter
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter(journal=True))  # no time: a line begins with <3>
        logging.getLogger().addHandler(handler)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        held = []
        with contextlib.suppress(OSError):  # until no descriptor is left
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        try:
            json.loads("{")
        except ValueError:
            logging.exception("a state change failed")
        for fd in held:
            os.close(fd)
        print(json.dumps(stream.getvalue().splitlines()))
        """)
    # 3.11: traceback reads textwrap for every exception (deferred, its load failed); 3.13:
    # `ast` for the `^^^` marks of this `-c` code's frame (`inspect`, which loads it, deferred)
    assert seen[:2] == ["<3>ERROR   root: a state change failed", "<3>Traceback (most recent call last):"]
    assert seen[-1].startswith("<3>json.decoder.JSONDecodeError")  # not "--- Logging error ---"


def test_dir_of_a_deferred_module_loads_it_and_lists_its_names(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer(("lazymod",))
        import lazymod
        names = dir(lazymod)
        print(json.dumps({"answer": "ANSWER" in names, "ours": sorted({"__getattr__", "__dir__"} & set(vars(lazymod))),
                          "loaded": deferred.is_loaded("lazymod"), "runs": runs()}))
        """)
    assert seen == {"answer": True, "ours": [], "loaded": True, "runs": 1}  # as `dir()` of a module imported


def test_pathlib_loads_without_ipaddress_and_a_url_host_in_brackets_loads_it(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer()
        import pathlib, urllib.parse
        before = [deferred.is_loaded("ipaddress"), pathlib.Path("/a b").as_uri()]
        host = urllib.parse.urlsplit("http://[::1]:8080/x").hostname
        try:
            urllib.parse.urlsplit("http://[not-an-address]/")
            refused = ""
        except ValueError as exc:
            refused = str(exc)
        print(json.dumps({"before": before, "host": host, "refused": refused,
                          "after": deferred.is_loaded("ipaddress")}))
        """)
    assert seen["before"] == [False, "file:///a%20b"]  # pathlib (and its urllib.parse) read none of it
    assert seen["host"] == "::1" and seen["after"]  # urllib.parse's check of a bracketed host loads it
    assert "does not appear to be an IPv4 or IPv6 address" in seen["refused"]


def test_pathlib_loads_without_urllib_parse_ntpath_and_fnmatch_and_each_loads_when_used(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer()
        import pathlib, urllib
        names = ("urllib.parse", "ntpath", "fnmatch")
        before = [deferred.is_loaded(name) for name in names]
        bound = urllib.parse is sys.modules["urllib.parse"]  # `import urllib.parse` then urllib.parse.X
        uses = [pathlib.PurePath("a/b.txt").match("*.txt"), str(pathlib.PureWindowsPath("c:/a", "b")),
                pathlib.Path("/a b").as_uri(), urllib.parse.quote("a b"), __import__("ntpath").join("a", "b")]
        print(json.dumps({"before": before, "bound": bound, "uses": uses,
                          "after": [deferred.is_loaded(name) for name in names]}))
        """)
    # Python 3.12's pathlib reads fnmatch as it loads: not deferred there (executor/deferred.py)
    assert seen["before"] == [False, False, sys.version_info[:2] == (3, 12)] and seen["bound"]
    assert seen["uses"] == [True, "c:\\a\\b", "file:///a%20b", "a%20b", "a\\b"]
    assert seen["after"] == [True, True, True]
