"""`read_definition` (executor/task/definition.py), what `stoker observe` shows of a task's
`.stoker/task.json`, on sandboxes made here: each reason there is none, whole, from what
`.stoker` holds and what the reader knows of the attempt (`Asked`), a definition of another
attempt or run told apart, and each limit at its value and one past it. The end-to-end
tests (tests/e2e/test_task_file_why.py) reach some of these with a real `stoker run` killed
at the point; here every branch is made on purpose."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from executor.task.definition import (
    MAX_DEFINITION_BYTES,
    MAX_DEFINITION_DEPTH,
    NAMES_LOOKED_AT,
    Asked,
    read_definition,
)

pytestmark = pytest.mark.timeout(60)

TEMP = ".task.json.0123abcd.tmp"  # a writer's temporary (executor/host/replacefile.py)
NOT_KEPT = ("its supervisor did not keep it: a Stoker from before task.json, or one that could not write it "
            "(`task_definition_unwritten` in its log), or it was removed since")
KILLED = f"its supervisor was killed as it wrote it (it left {TEMP}, which the next supervisor of this sandbox removes)"
LET_GO = ("its supervisor let go of the sandbox before it recorded the attempt: it could not write it "
          "(`task_definition_unwritten` in its log), or stopped before it did")
STARTING = "its supervisor is starting the attempt: it writes it before the attempt's first record"
DIED = "its supervisor died before it wrote it (nor did it record the attempt in its checkpoint)"


@pytest.fixture
def sandbox(tmp_path) -> Path:
    (tmp_path / ".stoker").mkdir()
    return tmp_path


def where(sandbox: Path) -> str:
    return f"{sandbox}/.stoker/task.json"


def definition(sandbox: Path, doc) -> None:
    (sandbox / ".stoker/task.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))


def why(sandbox: Path, asked: Asked = Asked()) -> str:
    doc, problem = read_definition(sandbox, asked)
    assert doc is None
    return problem


# -- no task.json: why, from what .stoker holds and what is known of the attempt --

@pytest.mark.parametrize("temp, asked, said", [
    (True, Asked(alive=True), "its supervisor is writing it"),
    (True, Asked(alive=True, let_go=True, recorded=False), "its supervisor is writing it"),
    (True, Asked(let_go=True, recorded=False), LET_GO),
    (False, Asked(let_go=True, recorded=False), LET_GO),
    (False, Asked(let_go=True, recorded=True), NOT_KEPT),
    (True, Asked(), KILLED),
    (True, Asked(recorded=False), KILLED),
    (False, Asked(alive=True, recorded=False), STARTING),
    (False, Asked(recorded=False), DIED),
    (False, Asked(alive=True), NOT_KEPT),
    (False, Asked(), NOT_KEPT),
])
def test_without_the_file_the_reason_is_told_from_the_temporary_and_the_attempt(sandbox, temp, asked, said):
    if temp:
        (sandbox / ".stoker" / TEMP).write_bytes(b"{")
    assert why(sandbox, asked) == f"no {where(sandbox)}: {said}"


def test_a_temporary_that_is_a_directory_is_no_writer_s(sandbox):
    (sandbox / ".stoker" / TEMP).mkdir()
    assert why(sandbox, Asked(alive=True)) == f"no {where(sandbox)}: {NOT_KEPT}"


@pytest.mark.parametrize("names, cannot_tell", [(NAMES_LOOKED_AT, False), (NAMES_LOOKED_AT + 1, True)])
def test_a_stoker_directory_filled_past_64_names_is_said_so_not_listed(sandbox, names, cannot_tell):
    for n in range(names):
        (sandbox / ".stoker" / f"junk-{n:03}").write_bytes(b"")
    expected = (f"why cannot be told: {sandbox}/.stoker holds more than {NAMES_LOOKED_AT} names (a supervisor's "
                "holds a few)") if cannot_tell else NOT_KEPT
    assert why(sandbox) == f"no {where(sandbox)}: {expected}"


def test_no_stoker_directory_or_another_one_than_its_supervisor_s_is_named(sandbox, tmp_path):
    assert why(tmp_path / "gone") == f"cannot open {tmp_path}/gone/.stoker/task.json: No such file or directory (ENOENT)"
    definition(sandbox, {"task_id": "t"})
    doc, problem = read_definition(sandbox, pinned="1:2")
    assert doc is None
    assert problem == (f"cannot open {where(sandbox)}: {sandbox}/.stoker is not the directory its supervisor made "
                       "(the task may have put another in its place); nothing in it is trusted")


# -- a task.json of another task --

IDS = ("t-1", "t-2", "t-3")  # a `stoker run`'s attempts, oldest first


@pytest.mark.parametrize("other, asked, said", [
    ("t-1", Asked(task_id="t-2", ids=IDS), f"of task 't-1', an earlier attempt; this attempt's: {NOT_KEPT}"),
    ("t-3", Asked(task_id="t-2", ids=IDS), "of task 't-3', a later attempt"),
    ("t-9", Asked(task_id="t-2", ids=IDS, later=frozenset({"t-9"})), "of task 't-9', a later attempt"),
    ("t-0", Asked(task_id="t-2", ids=IDS, recorded=False),
     f"of task 't-0', an earlier run's in this sandbox; this attempt's: {DIED}"),
])
def test_a_definition_of_another_attempt_or_run_is_told_which(sandbox, other, asked, said):
    definition(sandbox, {"task_id": other, "name": "web"})
    assert why(sandbox, asked) == f"the sandbox's task.json is {said}"


@pytest.mark.parametrize("doc, asked", [
    ({"task_id": "t-2", "name": "web"}, Asked(task_id="t-2")),
    ({"task_id": "t-1", "name": "web"}, Asked()),  # no id asked: any
    ({"name": "web"}, Asked(task_id="t-2")),  # an id of none: a Stoker that wrote none
])
def test_the_attempt_s_own_definition_or_one_nothing_tells_apart_is_read(sandbox, doc, asked):
    definition(sandbox, doc)
    assert read_definition(sandbox, asked) == (doc, "")


def test_another_attempt_s_definition_in_a_filled_stoker_directory_names_it(sandbox):
    definition(sandbox, {"task_id": "t-1"})
    for n in range(NAMES_LOOKED_AT + 1):
        (sandbox / ".stoker" / f"junk-{n:03}").write_bytes(b"")
    cannot_tell = f"why cannot be told: {sandbox}/.stoker holds more than {NAMES_LOOKED_AT} names (a supervisor's holds a few)"
    assert why(sandbox, Asked(task_id="t-2", ids=IDS)) == (
        f"the sandbox's task.json is of task 't-1', an earlier attempt; this attempt's: {cannot_tell}")
    assert why(sandbox, Asked(task_id="t-2", ids=("t-2",))) == (
        f"the sandbox's task.json is of task 't-1', an earlier run's in this sandbox; this attempt's: {cannot_tell}")


# -- the file itself --

@pytest.mark.parametrize("plant, said", [
    (lambda p: os.symlink("/etc/passwd", p),
     "task.json: it is a symlink, not a regular file (Stoker follows no symlink inside a sandbox)"),
    (lambda p: os.mkdir(p), "task.json: it is a directory, not a regular file"),
])
def test_a_file_that_is_no_regular_one_is_not_opened(sandbox, plant, said):
    plant(sandbox / ".stoker/task.json")
    assert why(sandbox) == f"cannot open {where(sandbox)}: {said}"


@pytest.mark.parametrize("text, said", [
    ("nope", "is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("[1]", "holds a JSON list, not an object"),
    ('"web"', "holds a JSON str, not an object"),
])
def test_a_file_that_is_no_json_object_is_named(sandbox, text, said):
    definition(sandbox, text)
    assert why(sandbox) == f"{where(sandbox)} {said}"


def test_a_file_of_the_limit_is_read_and_one_byte_more_is_not(sandbox):
    head = '{"task_id": "t", "pad": "'
    text = head + "x" * (MAX_DEFINITION_BYTES - len(head) - 2) + '"}'
    assert len(text) == MAX_DEFINITION_BYTES
    definition(sandbox, text)
    assert read_definition(sandbox) == (json.loads(text), "")  # read in blocks, joined as they were
    definition(sandbox, text + " ")
    assert why(sandbox) == f"{where(sandbox)} is larger than {MAX_DEFINITION_BYTES} bytes: not shown"


def nested(levels: int) -> dict:
    """An object of `levels` levels of objects and arrays, the top one counted."""
    inner: list | dict = []
    for _ in range(levels - 2):
        inner = [inner]
    return {"task_id": "t", "deep": inner}


def test_a_document_of_100_levels_is_read_and_one_of_101_is_not(sandbox):
    definition(sandbox, nested(MAX_DEFINITION_DEPTH))
    assert read_definition(sandbox)[1] == ""
    definition(sandbox, {"task_id": "t", "flat": [1, {"a": "b"}], "deep": nested(MAX_DEFINITION_DEPTH - 1)})
    assert read_definition(sandbox)[1] == ""
    definition(sandbox, nested(MAX_DEFINITION_DEPTH + 1))
    assert why(sandbox) == f"{where(sandbox)} is nested deeper than {MAX_DEFINITION_DEPTH} levels: not shown"


def test_a_document_deeper_than_the_parser_recurses_is_said_too_deep(sandbox):
    definition(sandbox, '{"deep": ' + "[" * 200_000 + "]" * 200_000 + "}")
    assert why(sandbox) == f"{where(sandbox)} is nested deeper than {MAX_DEFINITION_DEPTH} levels: not shown"
