"""`executor.deferred` in real interpreters: what it serves without loading a module
(`platform`'s implementation name, pystachio's `isclass` and `pformat`, subprocess's
`PollSelector`: each answers, and pickles, as the module's own), and attrs' validators, converters and filters, deferred
until a config reads them. The probe and its prelude are test_deferred's.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from executor import deferred
from tests.integration.test_deferred import probe
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)


def test_attrs_asks_platform_its_implementation_without_loading_it(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer()
        import attrs, platform
        served = platform.python_implementation
        before = [deferred.is_loaded("platform"), served()]
        system = platform.system()  # a name the stand-in has not: the module runs
        print(json.dumps({"before": before, "system": system, "own": platform.python_implementation(),
                          "replaced": platform.python_implementation is not served, "again": served()}))
        """)
    assert seen["before"] == [False, seen["own"]]  # attrs read it too, as it loaded
    assert seen["system"] == "Linux" and seen["replaced"] and seen["again"] == seen["own"]


def test_an_implementation_sys_does_not_name_is_platform_s_own_answer(tmp_path):
    seen = probe(tmp_path, """
        deferred._IMPLEMENTATIONS.clear()  # as on an interpreter the table lacks
        deferred.defer(("platform",))
        import platform
        answer = platform.python_implementation()
        print(json.dumps([answer, deferred.is_loaded("platform")]))
        """)
    assert seen == ["CPython", True]  # asked platform's own, which loaded


def test_the_implementation_sys_names_is_platform_s_name_for_it():
    import platform

    assert deferred._python_implementation() == platform.python_implementation()


def test_a_served_function_pickles_as_the_module_s_own(tmp_path):
    seen = probe(tmp_path, """
        import pickle
        deferred.defer(("platform",))
        import platform
        served = platform.python_implementation
        data = pickle.dumps(served)  # by reference: platform.python_implementation
        print(json.dumps({"module": served.__module__, "same": pickle.loads(data) is served,
                          "loaded": deferred.is_loaded("platform")}))
        """)
    # the stand-in's function names the module it stands in for: a pickle of it is
    # platform.python_implementation, the module's own where platform loaded (it named
    # executor.deferred: PicklingError)
    assert seen == {"module": "platform", "same": True, "loaded": False}


def test_a_served_function_imported_before_its_module_loaded_pickles_as_the_module_s_own_after(tmp_path):
    seen = probe(tmp_path, """
        import pickle
        deferred.defer(("pprint",))
        from pprint import pformat  # a config's own import (or pystachio's), before pprint loads
        before = pickle.loads(pickle.dumps(pformat)) is pformat
        text = pformat({"b": [1] * 3}, 1, width=8)  # pprint loads: its own pformat replaces the stand-in there
        import pprint
        text = [text, text == pprint.pformat({"b": [1] * 3}, 1, width=8) != pprint.pformat({"b": [1] * 3})]
        data = pickle.dumps(pformat)
        class Holder:
            show = pformat
        bound = Holder().show
        print(json.dumps({"before": before, "text": text, "after": pickle.loads(data) is pprint.pformat,
                          "own": pprint.pformat is not pformat, "bound": bound.__self__.__class__.__name__,
                          "unbound": Holder.show is pformat,
                          "name": [pformat.__module__, pformat.__qualname__]}))
        """)
    # was: PicklingError, "it's not the same object as pprint.pformat", once pprint had loaded
    # (a config that hands pformat, or inspect.isclass, to a process pool after that)
    assert seen == {"before": True, "text": ["{'b': [1,\n       1,\n       1]}", True], "after": True, "own": True,
                    "bound": "Holder", "unbound": True, "name": ["pprint", "pformat"]}


def test_pystachio_s_isclass_and_pformat_answer_as_inspect_s_and_pprint_s_own(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer(("inspect", "pprint"))
        from inspect import isclass
        from pprint import pformat
        answers = [isclass(int), isclass(3), isclass(object=dict)]  # inspect.isclass(object)
        before = [deferred.is_loaded("inspect"), deferred.is_loaded("pprint")]
        text = pformat({"b": [1] * 3})
        print(json.dumps({"answers": answers, "before": before, "text": text,
                          "pprint": deferred.is_loaded("pprint")}))
        """)
    # (was: the stand-in's parameter was `obj`, and a call by inspect's keyword a TypeError)
    assert seen["answers"] == [True, False, True] and seen["before"] == [False, False]
    assert seen["text"] == "{'b': [1, 1, 1]}" and seen["pprint"]  # pprint's own, loaded as it is called


def test_subprocess_loads_without_selectors_and_its_communicate_loads_them(tmp_path):
    seen = probe(tmp_path, """
        deferred.defer()
        import subprocess
        before = deferred.is_loaded("selectors")
        done = subprocess.run(["/bin/sh", "-c", "cat; echo err >&2"], input=b"in", capture_output=True)
        import selectors
        print(json.dumps({"before": before, "out": [done.stdout.decode(), done.stderr.decode()],
                          "after": deferred.is_loaded("selectors"),
                          "poll": type(subprocess._PopenSelector()) is selectors.PollSelector}))
        """)
    # its `_PopenSelector`, read as subprocess loads, is the stand-in: called, selectors' own
    assert not seen["before"] and seen["out"] == ["in", "err\n"] and seen["after"] and seen["poll"]


def test_a_capture_with_a_timeout_that_expires_and_check_output_go_through_the_stand_in(tmp_path):
    # `run(capture_output=True, timeout=...)`, whose expiry (2 s: the child has written long
    # before) kills the child and communicates again, and `check_output`
    seen = probe(tmp_path, """
        deferred.defer()
        import subprocess
        try:
            subprocess.run(["/bin/sh", "-c", "echo early; exec sleep 60"], capture_output=True, timeout=2)
            expired = None
        except subprocess.TimeoutExpired as exc:
            expired = exc.stdout.decode()
        print(json.dumps({"expired": expired, "out": subprocess.check_output(["echo", "out"]).decode(),
                          "loaded": deferred.is_loaded("selectors")}))
        """)
    assert seen == {"expired": "early\n", "out": "out\n", "loaded": True}


def test_attrs_loads_without_its_validators_and_a_config_that_reads_them_loads_them(tmp_path):
    seen = probe(tmp_path, """
        made = deferred.defer()
        hooked = isinstance(sys.meta_path[0], deferred.AttrsCompatHook)  # first: before the path's finder
        import attr, attrs
        unread = [m for m in deferred.ATTRS_UNREAD if deferred.is_loaded(m)]
        package = "attr" in sys.modules  # found without running attr/__init__.py's imports first
        served = [issubclass(attr._compat._AnnotationExtractor, deferred.PlainAnnotations),
                  any(isinstance(f, deferred.AttrsCompatHook) for f in sys.meta_path), deferred.defer()]

        @attrs.frozen
        class Port:
            number: int = attrs.field(validator=attrs.validators.instance_of(int))

        try:
            Port("80")
            refused = ""
        except TypeError as exc:
            refused = str(exc)
        from attr.validators import in_
        from attrs.converters import optional
        print(json.dumps({"made": [m for m in made if m in deferred.ATTRS_UNREAD], "unread": unread,
                          "package": package, "port": Port(80).number, "refused": refused, "served": served,
                          "hooked": hooked,
                          "in": in_((1, 2)).__class__.__name__, "optional": optional(int)("3"),
                          "include": callable(attrs.filters.include(int)),
                          "loaded": sorted(m for m in deferred.ATTRS_UNREAD if deferred.is_loaded(m))}))
        """)
    assert seen["made"] == list(deferred_attrs()) and seen["unread"] == [] and seen["package"]
    # attrs' extractor served by the hook, which is gone then, and comes back for nothing
    assert seen["hooked"] and seen["served"] == [True, False, []]
    assert seen["port"] == 80 and "'number' must be <class 'int'>" in seen["refused"]  # attrs' own, loaded
    assert seen["in"] == "_InValidator" and seen["optional"] == 3 and seen["include"]
    assert seen["loaded"] == sorted(deferred_attrs())


def deferred_attrs() -> tuple[str, ...]:
    from executor.deferred import ATTRS_UNREAD

    return ATTRS_UNREAD


VALIDATING_CONFIG = """\
import attr, attrs
from attr import validators
from attrs.validators import instance_of
from attr.converters import optional
from attrs.filters import exclude

@attr.s
class Size(object):
    mb = attr.ib(validator=[validators.instance_of(int), attrs.validators.ge(1)], converter=optional(int))

@attrs.define
class Named:
    name: str = attrs.field(validator=instance_of(str))

try:
    Named(3)
    raise SystemExit("attrs' validator did not run")
except TypeError:
    Named("ok")
assert attrs.asdict(Named("x"), filter=exclude(attrs.fields(Named).name)) == {}
jobs = [Job(task=Task(processes=[Process(name='web', cmdline='echo hi')],
                      resources=Resources(cpu=0.1, ram=Size("32").mb * MB, disk=32 * MB)),
            cluster='c', role='r', environment='e', name='sized')]
"""


def test_a_config_that_uses_attrs_validators_converters_and_filters_at_import_loads_them(tmp_path):
    """`stoker inspect` (and `stoker run`'s planning, the same loader) with attrs' three
    modules deferred by the entry point: a config's `from attr import validators`,
    `from attrs.validators import ...` and the validators of classes it makes work as with
    them loaded (STOKER_CODE_CACHE=off)."""
    (tmp_path / "job.aurora").write_text(VALIDATING_CONFIG)
    environ = {k: v for k, v in os.environ.items() if k != "STOKER_CODE_CACHE"}
    for setting in (str(tmp_path / "cache"), "off"):
        result = subprocess.run([sys.executable, "-m", "executor", "inspect", "job.aurora"], cwd=tmp_path,
                                env={**environ, "PYTHONPATH": str(REPO), "STOKER_CODE_CACHE": setting},
                                capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stderr) == (0, "")
        assert "job c/r/e/sized" in result.stdout and "ram=33554432" in result.stdout
