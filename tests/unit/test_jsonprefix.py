"""`executor/mesos/jsonprefix.py`: the string values at given key paths in the first bytes of
a JSON object (what is kept of a record too large to hold). Table tests: the prefix, the key
paths wanted, what is found (exactly: nothing else is ever returned)."""
from __future__ import annotations

import pytest

from executor.mesos.jsonprefix import string_values

TYPE = ("type",)
TASK_ID = ("launch", "task", "task_id", "value")
LAUNCH = b'{"type": "LAUNCH", "launch": {"task": {"name": "big", "task_id": {"value": "t-1"}, "data": "'

CASES = {
    "a LAUNCH's type and task id": (LAUNCH + b"x" * 100, [TYPE, TASK_ID], {TYPE: "LAUNCH", TASK_ID: "t-1"}),
    "only the paths asked for": (LAUNCH, [TASK_ID], {TASK_ID: "t-1"}),
    "cut inside the task id: what came before": (LAUNCH[:LAUNCH.index(b"t-1") + 1], [TYPE, TASK_ID],
                                                  {TYPE: "LAUNCH"}),
    "cut inside a key": (b'{"ty', [TYPE], {}),
    "nothing at all": (b"", [TYPE], {}),
    "the first value of a repeated key": (b'{"type": "A", "type": "B"}', [TYPE], {TYPE: "A"}),
    "numbers, true, false and null are passed over": (
        b'{"n": 1.5e3, "t": true, "f": false, "z": null, "type": "UPDATE"}', [TYPE], {TYPE: "UPDATE"}),
    "a value after a closed object": (b'{"a": {"b": "c", "d": [1, 2]}, "type": "ACK"}', [TYPE], {TYPE: "ACK"}),
    "a key inside an array never matches": (
        b'{"launch": [{"task": {"task_id": {"value": "no"}}}], "type": "T"}', [TYPE, TASK_ID], {TYPE: "T"}),
    "array items are values, never keys": (b'{"a": ["type", "X"], "type": "Y"}', [TYPE, ("a", "type")],
                                           {TYPE: "Y"}),
    "an array's place in a path matches no key, whatever its name": (b'{"a": [{"b": "c"}]}', [("a", "None", "b")],
                                                                       {}),
    "a string value is not a key": (b'{"launch": "task", "type": "Z"}', [TYPE, ("launch", "task")],
                                    {TYPE: "Z"}),
    "escapes are decoded": (b'{"type": "A\\u00e9\\"b"}', [TYPE], {TYPE: 'A\u00e9"b'}),
    "a bad escape ends the walk": (b'{"type": "A", "x": "\\q", "y": "B"}', [TYPE, ("y",)], {TYPE: "A"}),
    "a stray closing bracket ends the walk": (b'{"type": "A"}} {"y": "B"}', [TYPE, ("y",)], {TYPE: "A"}),
    "not JSON": (b"<html>", [TYPE], {}),
}


@pytest.mark.parametrize("prefix, wanted, found", CASES.values(), ids=CASES.keys())
def test_string_values_at_key_paths(prefix, wanted, found):
    assert string_values(prefix, wanted) == found
