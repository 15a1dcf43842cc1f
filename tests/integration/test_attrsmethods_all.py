"""`executor.attrsmethods` over every attrs class of Stoker's: what each served `__repr__`,
`__eq__`, `__ne__` and `__hash__` answers is what attrs' own answers (STOKER_CODE_CACHE=off).

Each class of `executor`, `config` and `healthcheck` (every module imported) is made with
each field set to a string of its name, and again with one field changed; the answers of
a process with attrs' own methods and of one with the code cache installed (the same
PYTHONHASHSEED, so that a class's own number in its hash is the same) are compared, as are
a repr of an instance whose first shown field holds itself and a pickled copy.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.attrsprobe import run_probe

pytestmark = pytest.mark.timeout(180)

PROBE = textwrap.dedent("""
    import gc, importlib, json, pickle, pkgutil, sys
    from executor import codecache
    installed = sys.argv[1] == "cache" and codecache.install("run")
    import attr, config, executor, healthcheck
    from executor import attrsmethods

    for package in (executor, config, healthcheck):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    OURS = ("executor", "config", "healthcheck")
    classes = {f"{c.__module__}.{c.__qualname__}": c for c in gc.get_objects()
               if isinstance(c, type) and attr.has(c) and c.__module__.partition(".")[0] in OURS}

    def answer(ask):
        try:
            return ask()
        except Exception as exc:
            return f"raised {type(exc).__name__}"

    def made(cls, changed=None, value=None):
        self = object.__new__(cls)
        for a in attr.fields(cls):
            object.__setattr__(self, a.name, a.name + "!" if a.name == changed else a.name)
        if value is not None:
            object.__setattr__(self, attr.fields(cls)[0].name, value(self))
        return self

    rows, shared, own_state, shared_state = {}, 0, 0, 0
    for name, cls in sorted(classes.items()):
        one, two = made(cls), made(cls)
        row = {"repr": answer(lambda: repr(one)), "eq": answer(lambda: one == two),
               "ne": answer(lambda: one != two), "other": one.__eq__(object()) is NotImplemented,
               "hashes": answer(lambda: hash(one) == hash(two)), "unhashable": cls.__hash__ is None,
               "pickled": answer(lambda: repr(pickle.loads(pickle.dumps(one))))}
        if cls.__hash__ not in (None, object.__hash__):  # (not by identity: the same in both processes)
            row["hash"] = answer(lambda: hash(one))
        if attr.fields(cls):
            row["loop"] = answer(lambda: repr(made(cls, value=lambda self: [self])))
        for a in attr.fields(cls):
            changed = made(cls, a.name)
            row["eq " + a.name] = answer(lambda: one == changed)
            row["ne " + a.name] = answer(lambda: one != changed)
            row["hash " + a.name] = answer(lambda: hash(one) == hash(changed))
        rows[name] = row
        shared += cls.__repr__ is attrsmethods.shared_repr and (cls.__hash__ in (None, object.__hash__)
                                                                or cls.__hash__ is attrsmethods.shared_hash)
        own_state += getattr(cls.__getstate__, "__qualname__", "").endswith("slots_getstate")
        shared_state += cls.__getstate__ is attrsmethods.shared_getstate and cls.__setstate__ is attrsmethods.shared_setstate
    print(json.dumps({"installed": installed, "rows": rows, "shared": shared, "state": [own_state, shared_state]}))
""")


def probe(cache: Path, mode: str) -> dict:
    return run_probe(PROBE, cache, mode, seed=11, timeout=120)


def test_every_stoker_class_answers_as_with_attrs_own_methods(tmp_path):
    plain, served = probe(tmp_path, "plain"), probe(tmp_path, "cache")
    assert not plain["installed"] and served["installed"]
    assert plain["shared"] == 0 and served["shared"] == len(served["rows"]) > 150
    # a slotted class's pickling methods: attrs' two closures each, or the two every class shares
    assert plain["state"][1] == served["state"][0] == 0 and plain["state"][0] == served["state"][1] > 150
    assert served["rows"].keys() == plain["rows"].keys()
    differ = {name: {key: (row[key], served["rows"][name].get(key)) for key in row
                     if row[key] != served["rows"][name].get(key)}
              for name, row in plain["rows"].items() if row != served["rows"][name]}
    assert differ == {}
    assert any("=[...]" in row.get("loop", "") for row in plain["rows"].values())
