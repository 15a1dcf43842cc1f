"""`config/explain.py`'s words for a config that fails, each at the place it is worked out:
an exception no frame of the config raised, a file that is no UTF-8 or holds a NUL (its
line and column counted from the file's start, the first one named), the compiler's
recursion told from the config's own by the depth of the stack, what a schema type
expects, a message that cannot be shown or is long, and the struct a wrong value was
meant to be. tests/unit/test_loader_errors.py has the common cases through the loader."""
from __future__ import annotations

import sys

import pytest
from pystachio import Boolean, Enum, Float, Integer, List, Map, String

from config import explain
from config.schema import Process
from tests.support.configs import error_of, write_config


def test_an_exception_no_frame_of_the_config_raised_names_the_file_as_given():
    assert str(explain.exec_error(["a.aurora"], "a.aurora", ValueError("bad"))) == "'a.aurora': ValueError: bad"


def test_memory_run_out_is_one_short_sentence():
    assert str(explain.exec_error(["a.aurora"], "a.aurora", MemoryError())) == (
        "'a.aurora': MemoryError: the config code ran out of memory")


class _Unshowable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


def test_a_message_that_cannot_be_shown_leaves_the_class_name_and_a_long_one_is_cut_at_300():
    assert str(explain.exec_error(["a.aurora"], "a.aurora", _Unshowable())) == "'a.aurora': _Unshowable"
    long = "x" * 299 + "yz"
    assert str(explain.exec_error(["a.aurora"], "a.aurora", ValueError(long))) == (
        f"'a.aurora': ValueError: {'x' * 297}...")
    assert str(explain.exec_error(["a.aurora"], "a.aurora", ValueError(long[:300]))) == (
        f"'a.aurora': ValueError: {long[:300]}")


@pytest.mark.parametrize("exc, said", [
    (FileNotFoundError(2, "No such file or directory"), "No such file or directory"),
    (OSError("a reason of its own"), "a reason of its own"),
    (UnicodeDecodeError("utf-8", b"\nab\xff", 3, 4, "invalid start byte"),
     "line 2, column 3: byte 0xff is not UTF-8 (a config is UTF-8 text: save it as UTF-8)"),
    (UnicodeDecodeError("utf-8", b"a\nb\n\xe2\x82\xacc\xff", 8, 9, "invalid start byte"),
     "line 3, column 3: byte 0xff is not UTF-8 (a config is UTF-8 text: save it as UTF-8)"),
])
def test_a_file_that_cannot_be_read_is_said_in_the_system_s_words_or_by_line_and_column(exc, said):
    assert explain.unread(exc) == said


@pytest.mark.parametrize("text, line, column", [
    ("\nab\0", 2, 3),
    ("\n\nab\0x\n\0", 3, 3),  # the first NUL, after the last line break before it
])
def test_a_nul_character_is_named_by_its_line_and_column(text, line, column):
    error = explain.uncompiled(SyntaxError("source code cannot contain null bytes"), "c.aurora", text)
    assert isinstance(error, SyntaxError)
    assert (error.filename, error.lineno, error.offset) == ("c.aurora", line, column)
    assert error.msg == f"a NUL character at column {column} (a config is text: no source code holds one)"


def test_the_compiler_s_recursion_is_told_from_the_config_s_own_by_half_the_limit(monkeypatch):
    """Under half the recursion limit the stack was shallow: the compiler's own recursion
    (an expression of thousands of parts). At half or more, the config's code recursed."""
    monkeypatch.setattr(sys, "getrecursionlimit", lambda: 1001)  # odd: half of it is no whole number
    answers = []
    for depth in (499, 500):
        monkeypatch.setattr(explain, "_depth", lambda depth=depth: depth)
        answers.append(explain.uncompiled(RecursionError("maximum recursion depth exceeded"), "c.aurora", "x = 1\n"))
    below, at = answers
    assert isinstance(below, SyntaxError) and below.msg.startswith("it is nested too deeply for Python to compile")
    assert isinstance(at, RecursionError)


def _one_deeper() -> int:
    return explain._depth()


def test_the_stack_s_depth_counts_each_frame():
    assert _one_deeper() == explain._depth() + 1


@pytest.mark.parametrize("klazz, words", [
    (String, "a string"), (Integer, "an integer"), (Float, "a number"), (Boolean, "a boolean"),
    (List(Process), "a list of Process"), (Map(String, Integer), "a map from String to Integer"),
    (Enum("a", "b"), "one of a, b"), (Process, "a Process"),
    (int, "int"), (3, "a value of another type"),
])
def test_what_a_schema_type_expects_in_words(klazz, words):
    assert explain.kind(klazz) == words


def test_arguments_that_are_no_field_names_are_the_exception_s_words(tmp_path):
    path = write_config(tmp_path, "p = Process({1: 2})\n", "keys.aurora")
    assert error_of(path) == f"{path}:1: TypeError: keywords must be strings"


def test_a_wrong_value_two_structs_down_names_the_struct_it_was_meant_to_be(tmp_path):
    path = write_config(tmp_path, "j = Job(task={'processes': [3]})\n", "deep.aurora")
    assert error_of(path) == f"{path}:1: Task.processes must be a list of Process; 3 is not a Process"
