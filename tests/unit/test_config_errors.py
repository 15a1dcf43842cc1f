"""`config/errors.py`: a configuration error's message and problems, several problems in one
message (20 listed, the rest counted), and a value or a text cut for a message at its limit."""
from __future__ import annotations

import pytest

from config.errors import (
    MAX_LISTED_PROBLEMS,
    ConfigError,
    TaskDocumentError,
    cut,
    in_file,
    join_problems,
    show,
)


def test_an_error_is_its_message_and_its_problems_or_the_message_alone():
    error = ConfigError("bad job", ["a", "b"])
    assert (str(error), error.args, error.problems) == ("bad job", ("bad job",), ("a", "b"))
    assert ConfigError("one").problems == ("one",)


def test_an_error_named_by_its_file_keeps_its_class_and_details():
    error = TaskDocumentError("processes[0]: no cmdline", ["x", "y"])
    named = in_file(error, "task.json")
    assert type(named) is TaskDocumentError and named.problems == ("x", "y")
    assert (str(named), named.args) == ("task.json: processes[0]: no cmdline", ("task.json: processes[0]: no cmdline",))
    assert str(error) == "processes[0]: no cmdline"  # the one raised is left as it was


@pytest.mark.parametrize(("count", "listed"), [
    (1, "p0"),
    (2, "2 problems: p0; p1"),
    (MAX_LISTED_PROBLEMS, f"{MAX_LISTED_PROBLEMS} problems: " + "; ".join(f"p{i}" for i in range(MAX_LISTED_PROBLEMS))),
    (MAX_LISTED_PROBLEMS + 1, f"{MAX_LISTED_PROBLEMS + 1} problems: "
     + "; ".join(f"p{i}" for i in range(MAX_LISTED_PROBLEMS)) + "; and 1 more"),
    (25, "25 problems: " + "; ".join(f"p{i}" for i in range(MAX_LISTED_PROBLEMS)) + "; and 5 more"),
])
def test_problems_are_listed_in_order_the_first_twenty_then_counted(count, listed):
    assert MAX_LISTED_PROBLEMS == 20
    assert join_problems("job.aurora", [f"p{i}" for i in range(count)]) == f"job.aurora: {listed}"


@pytest.mark.parametrize(("length", "shown"), [(78, None), (79, "..."), (100, "...")])
def test_a_value_is_shown_as_its_repr_of_80_characters_at_most(length, shown):
    value = "x" * length  # its repr: two quotes more
    expected = repr(value) if shown is None else repr(value)[:77] + "..."
    assert show(value) == expected and len(show(value)) <= 80


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("a" * 64, 64, "a" * 64), ("a" * 65, 64, "a" * 61 + "..."), ("abcdef", 5, "ab..."), ("abcde", 5, "abcde")])
def test_a_text_is_cut_at_its_limit_with_a_mark(text, limit, expected):
    assert cut(text, limit) == expected
    assert cut(text) == cut(text, 64)
