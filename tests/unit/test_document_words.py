"""The task document's refusals (`config.document.decode`), each message whole and each limit
at its value and one past it: what a TASK_FAILED says when a scheduler's TaskInfo.data is not
a task Stoker can run. tests/unit/test_document.py has the format and its round trips."""
from __future__ import annotations

import json

import pytest

from config import document
from config.document import MAX_DOCUMENT_BYTES, decode
from config.errors import TaskDocumentError
from tests.support.configs import job, plain, process

VALID_JOB = plain(job(process("web", "serve {{thermos.ports[http]}}")))
PREFIX = "invalid task document: "


def refusal(data) -> str:
    with pytest.raises(TaskDocumentError) as caught:
        decode(data)
    message = str(caught.value)
    assert message.startswith(PREFIX), message
    return message.removeprefix(PREFIX)


def text(**fields) -> str:
    return json.dumps({"job": VALID_JOB, **fields})


def test_a_document_nested_deeper_than_the_parser_reads_says_so():
    assert refusal('{"job": ' + "[" * 200_000 + "]" * 200_000 + "}") == "it is nested too deeply to read"


def test_a_failure_below_the_document_s_checks_is_named_by_its_class_and_words(monkeypatch):
    def broken(tree):
        raise ZeroDivisionError("a failure nothing expected")

    monkeypatch.setattr(document, "normalize_tree", broken)
    assert refusal(text()) == "ZeroDivisionError: a failure nothing expected"


def test_text_that_is_no_json_is_named_with_the_parser_s_words():
    assert refusal('{"job": }') == "it is not JSON (Expecting value: line 1 column 9 (char 8))"


def test_a_lone_surrogate_escaped_in_the_document_is_named_by_its_path():
    message = refusal('{"job": {"name": "a\\udcffb"}}')
    assert message.startswith("job.name "), message


@pytest.mark.parametrize("length, shown", [
    (60, "k" * 60),
    (61, "k" * 57 + "..."),
])
def test_an_unknown_key_is_shown_up_to_60_characters(length, shown):
    assert refusal(text(**{"k" * length: 1})) == f"unknown keys '{shown}' (expected: job, instance, assigned_ports)"


@pytest.mark.parametrize("count, tail", [(20, ""), (21, ", ... (21 in all)")])
def test_unknown_keys_are_listed_up_to_twenty_then_counted(count, tail):
    keys = {f"k{n:02}": 1 for n in range(count)}
    listed = ", ".join(f"'k{n:02}'" for n in range(20))
    assert refusal(text(**keys)) == f"unknown keys {listed}{tail} (expected: job, instance, assigned_ports)"


def test_a_document_without_its_job_says_so():
    assert refusal('{"instance": 1}') == 'it has no "job"'


@pytest.mark.parametrize("value, named", [
    ([], "an array"), ("x", "a string"), (True, "a boolean"), (1, "a number"), (1.5, "a number"),
    (None, "null"),
])
def test_a_job_that_is_no_object_names_what_it_is(value, named):
    assert refusal(json.dumps({"job": value})) == f'"job" must be a JSON object, not {named}'


def test_a_job_field_of_the_wrong_type_is_named_below_job():
    message = refusal(json.dumps({"job": {**VALID_JOB, "max_task_failures": "many"}}))
    assert message == "invalid job: job.max_task_failures = 'many' is not an integer"


def test_an_integer_of_exactly_the_digits_python_reads_is_not_the_one_named():
    """json refuses the second number (4301 digits); the first (4300) reads: only the second
    is named, though both are looked at in the document's order."""
    data = ('{"instance": 1' + "0" * 4299 + ', "job": {"max_task_failures": 1' + "0" * 4300 + "}}")
    message = refusal(data)
    assert message.startswith("job.max_task_failures is an integer of more than 4300 digits"), message


def test_an_integer_too_long_in_what_is_no_object_is_said_in_the_parser_s_words():
    message = refusal("[1" + "0" * 4300 + "]")
    assert message.startswith("it is not JSON (Exceeds the limit (4300 digits)"), message


@pytest.mark.parametrize("kind", [str, bytes])
def test_a_document_of_exactly_the_limit_is_read_and_one_more_is_refused(kind):
    whole = text()
    padded = whole + " " * (MAX_DOCUMENT_BYTES - len(whole))
    assert decode(kind(padded, "utf-8") if kind is bytes else padded).instance == 0
    over = padded + " "
    unit = "characters long," if kind is str else "bytes,"
    assert refusal(kind(over, "utf-8") if kind is bytes else over) == (
        f"it is {MAX_DOCUMENT_BYTES + 1} {unit} over the {MAX_DOCUMENT_BYTES} byte limit")


def test_text_with_an_unpaired_surrogate_is_refused_in_words():
    assert refusal(text()[:-1] + ', "x": "\udcff"}') == "it is not UTF-8 (it contains unpaired surrogates)"


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_a_bytearray_or_a_memoryview_is_read_as_its_bytes(wrap):
    assert decode(wrap(text(instance=3).encode())).instance == 3


@pytest.mark.parametrize("value, named", [(123, "int"), (None, "NoneType"), ([b"{}"], "list")])
def test_what_is_neither_bytes_nor_text_is_named_by_its_type(value, named):
    assert refusal(value) == f"it must be bytes or text, not {named}"


def test_port_one_is_a_port_and_zero_is_refused_with_its_name_cut_at_60():
    assert decode(text(assigned_ports={"http": 1})).assigned_ports == {"http": 1}
    assert refusal(text(assigned_ports={"p" * 61: 0, "health": 65536, "x": True})) == (
        '"assigned_ports" numbers must be integers in 1..65535: ' + "p" * 57 + "...=0, health=65536, x=true")


@pytest.mark.parametrize("length, shown", [
    (58, '"' + "x" * 58 + '"'),  # 60 characters as JSON: whole
    (59, '"' + "x" * 56 + "..."),  # 61: cut to 57, then "..."
])
def test_a_value_in_a_message_is_shown_up_to_60_characters_of_its_json(length, shown):
    assert refusal(text(instance="x" * length)) == f'"instance" must be a non-negative integer, not {shown}'
