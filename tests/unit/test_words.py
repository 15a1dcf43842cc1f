"""config.words: numbers in words, "did you mean", and text made safe for a terminal."""
from __future__ import annotations

import re
import shlex

import pytest

from config.words import (
    columns,
    did_you_mean,
    loggable,
    lone_surrogate,
    number,
    pad,
    plural,
    printable,
    printable_lines,
    quoted,
    shell_path,
    shell_word,
    strings,
    texts,
)
from executor.cli.views import table


@pytest.mark.parametrize("text, shown", [
    ("plain text, é and → stay", "plain text, é and → stay"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("title\x1b]0;pwned\x07", "title\\x1b]0;pwned\\x07"),
    ("one\ntwo\r\tthree", "one\\ntwo\\r\\tthree"),
    ("\x9b31m C1 CSI and DEL\x7f", "\\u009b31m C1 CSI and DEL\\x7f"),  # the character: not the byte's
    ("\x00", "\\x00"),
    ("/tmp/sb-\udcff", "/tmp/sb-\\xff"),  # b'/tmp/sb-\xff' as Python decodes a name
    ("\udc9b31m", "\\x9b31m"),  # a raw 0x9b byte would be a CSI to an 8-bit terminal
    ("lone \ud800", "lone \\ud800"),
    ("\udc80 \udcff", "\\x80 \\xff"),  # the first and last bytes surrogateescape holds
    ("\udc7f \udd00 \udfff", "\\udc7f \\udd00 \\udfff"),  # the surrogates beside them: no byte
])
def test_printable_writes_control_characters_out(text, shown):
    assert printable(text) == shown


@pytest.mark.parametrize("text, shown", [
    ("plain-name_0.1", "plain-name_0.1"),
    ("é, 作业 and → stay", "é, 作业 and → stay"),
    ("we\u202eb", "we\\u202eb"),  # a right-to-left override: `bew` on a terminal
    ("\u2066a\u2069 \u200e\u200f \u061c", "\\u2066a\\u2069 \\u200e\\u200f \\u061c"),
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("a\u2028b\u2029c\x85d", "a\\u2028b\\u2029c\\u0085d"),  # line ends to str.splitlines
    # a C1 control, a character: was `\\x85`, as the byte 0x85 of a name not UTF-8 is shown
    ("nel\x85 \udc85", "nel\\u0085 \\x85"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("\x1b[2J\n/sb-\udcff", "\\x1b[2J\\n/sb-\\xff"),  # as printable writes them
    ("all ascii\x1b[2J\x7f", "all ascii\\x1b[2J\\x7f"),  # ASCII but not printable: no short cut
    # the soft hyphen, a character: was `\\xad`, as the byte 0xad of a name not UTF-8 is shown
    ("soft\xadhyphen \udcad", "soft\\u00adhyphen \\xad"),
])
def test_loggable_writes_format_characters_and_line_separators_out_too(text, shown):
    assert loggable(text) == shown


def test_loggable_escapes_every_format_character_unicode_names():
    """The class is written out (building it from unicodedata at each start would cost a
    start its time): it must hold every Cf character of this Python's Unicode, and no other
    it has assigned (3.12's Unicode 15 added U+13439-U+1343F, which 3.11's leaves unassigned:
    3.12 and 3.13 logged them as they were; `make test-pythons`)."""
    import sys
    import unicodedata

    format_chars = "".join(chr(c) for c in range(sys.maxunicode + 1)
                           if unicodedata.category(chr(c)) == "Cf")
    assert all(loggable(c) != c for c in format_chars)
    others = "".join(chr(c) for c in range(0xA0, 0x30000)
                     if unicodedata.category(chr(c)) not in ("Cf", "Cs", "Zl", "Zp", "Cc", "Cn"))
    assert loggable(others) == others


def test_columns_counts_what_a_terminal_shows():
    assert columns("plain") == 5 and columns("作业-0") == 6 and columns("e\u0301te\u0301") == 3
    assert pad("作业", 6) == "作业  " and pad("abc", 2) == "abc"
    # fullwidth Latin two columns each, halfwidth katakana and an ambiguous ± one
    assert columns("ＡＢ") == 4 and columns("ｱ±") == 2


def test_a_table_lines_up_wide_and_combining_names_and_keeps_each_row_on_one_line():
    """`stoker ps` and `stoker status`: a column after a Chinese name or a decomposed é was
    shifted by characters, not columns, and a sandbox named with a newline broke its row."""
    lines = table([["TASK_ID", "SANDBOX", ""], ["作业-0-ab", "/tmp/sb\nnl", ""],
                   ["e\u0301te\u0301-0-ab", "/tmp/b", ""], ["plain-0-ab", "/tmp/c", ""]], indent="")
    assert len(lines) == 4 and "/tmp/sb\\nnl" in lines[1]
    assert {columns(line[:line.index("/") if "/" in line else line.index("SANDBOX")]) for line in lines} == {12}


def test_printable_lines_keeps_the_line_breaks_only():
    assert printable_lines("a\x1b[2J\nb\tc\n") == "a\\x1b[2J\nb\\tc\n"


@pytest.mark.parametrize("word, known, hint", [
    ("cmdlin", ["name", "cmdline", "daemon"], "; did you mean 'cmdline'?"),
    ("helth", ["health", "http"], "; did you mean 'health'?"),
    ("bananas", ["cpu", "ram", "disk"], "; the known names are cpu, disk, ram"),
    ("x", [], ""),
    ("dsk", ["disk", "desk", "cpu"], "; did you mean 'disk' or 'desk'?"),
    ("portt", ["port1", "port2", "port3", "port4", "port5"],
     "; did you mean 'port5' or 'port4' or 'port3'?"),  # at most three, the closest first
])
def test_did_you_mean(word, known, hint):
    assert did_you_mean(word, known) == hint


def test_numbers_and_plurals():
    assert (number(5.0), number(0.25), number(1.23456)) == ("5", "0.25", "1.235")
    assert (plural(1, "process"), plural(2, "process"), plural(3, "attempt")) == \
        ("1 process", "2 processes", "3 attempts")


@pytest.mark.parametrize("value, shown", [
    ("a\udcff", "'a\\xff'"),  # b'a\xff' from argv: repr wrote 'a\udcff'
    ("p\udc80q\udc9b", "'p\\x80q\\x9b'"),
    ("a\\udcff", "'a\\\\udcff'"),  # a backslash typed before udcff: repr's doubling kept
    ("x\\\udc80", "'x\\\\\\x80'"),  # a backslash, then a byte that was not UTF-8
    ("it's", '"it\'s"'), (b"\xff", "b'\\xff'"), (3, "3"),
])
def test_quoted_is_repr_with_a_byte_that_was_not_utf8_written_as_printable_writes_it(value, shown):
    assert quoted(value) == shown


def test_a_message_quoting_what_it_was_given_shows_a_bad_byte_as_everywhere_else(capsys):
    """`stoker run X --kill-grace $'a\\xff'` said `'a\\udcff' is not a duration` and
    `stoker tail SANDBOX $'p\\xff'` `process 'p\\udcff'`, where every other line shows the
    byte as `\\xff` (docs/contract.md §1, Encodings)."""
    from executor.cli.main import main

    assert main(["run", "x.aurora", "--kill-grace", "a\udcff"]) == 2
    err = capsys.readouterr().err
    assert "--kill-grace='a\\xff' is not" in err and "udc" not in err
    assert did_you_mean("wbe\udcff", ["web\udcff"]) == "; did you mean 'web\\xff'?"


@pytest.mark.parametrize("text, word", [
    ("/tmp/sb", "/tmp/sb"), ("", "''"), ("a b", "'a b'"), ("it's", "'it'\"'\"'s'"),
    ("$HOME", "'$HOME'"), ("a\nb", "\"$(printf 'a\\nb')\""), ("x\udcff'\\%", "\"$(printf 'x\\377'\\''\\\\%%')\""),
    ("\x1b[31m\x9b", "\"$(printf '\\033[31m\\302\\233')\""), ("-\t", "\"$(printf '\\055\\t')\""),
    ("a!b\x01!!", "\"$(printf 'a\\041b\\001\\041\\041')\""),  # in double quotes: no `!` history expansion reads
    ("a!b", "'a!b'"), ("a!b\n", "$'a!b\\n'"),  # single-quoted: it reads none there
    ("a\n", "$'a\\n'"),  # a line break last, which `$(...)` drops: bash's form
    ("x\udcff'\\\n", "$'x\\xff\\'\\\\\\n'"), ("\x1b[31m\x9b\n", "$'\\x1b[31m\\u009b\\n'"),
    # the first and last C1 controls (characters: bash writes them in UTF-8), DEL and the last C0
    ("\x80\x9f\xa0\x7f\x1f\n", "$'\\u0080\\u009f\xa0\\x7f\\x1f\\n'"),
    ("\udc80\udcff\n", "$'\\x80\\xff\\n'"),  # the first and last bytes surrogateescape holds
    ("\ud800 \udc7f \udd00\n", "$'\\ud800 \\udc7f \\udd00\\n'"),  # lone surrogates, next to those
    # printf's: the first and last bytes surrogateescape holds, as those bytes; lone halves as surrogatepass writes them
    ("\udc80\udcff", "\"$(printf '\\200\\377')\""),
    ("\ud800\udc7f\udd00", "\"$(printf '\\355\\240\\200\\355\\261\\277\\355\\264\\200')\""),
    # format characters and line separators, as the log writes out (`loggable`): their bytes
    ("sb\u202ex", "\"$(printf 'sb\\342\\200\\256x')\""), ("a\u2028\U000e0001", "\"$(printf 'a\\342\\200\\250\\363\\240\\200\\201')\""),
    ("sb\u202e\xad\n", "$'sb\\u202e\\u00ad\\n'"),  # bash's `\\xad` is a byte, not the character ("\U000e0001\n", "$'\\U000e0001\\n'"),
])
def test_shell_word_is_one_word_a_posix_shell_reads_back_as_the_text_on_one_line(text, word):
    assert shell_word(text) == word
    assert loggable(word) == word  # a log line that quotes the command leaves it as it is


PRINTABLE_ASCII = "".join(map(chr, range(0x20, 0x7F)))


@pytest.mark.parametrize("text", [*PRINTABLE_ASCII, PRINTABLE_ASCII, "/srv/sandboxes/web-1", "/tmp/a b",
                                  "it's", "$HOME `id` !x", ""])
def test_shell_word_of_printable_ascii_is_shlex_quote_without_a_search_for_escapes(monkeypatch, text):
    """Printable ASCII holds no character a log line escapes: its word is `shlex.quote`'s,
    found without `re` compiling the escapes' class (a run's first report makes one)."""
    searched: list[str] = []
    search = re.search

    def recording(pattern, string, flags=0):
        searched.append(pattern)
        return search(pattern, string, flags)

    monkeypatch.setattr(re, "search", recording)
    assert shell_word(text) == shlex.quote(text)
    assert searched == []


@pytest.mark.parametrize("path, word", [
    ("-dir", "./-dir"), ("-a b", "'./-a b'"), ("-\t", "\"$(printf './-\\t')\""),  # read as no option
    ("/tmp/-dir", "/tmp/-dir"), ("a-", "a-"), ("", "''"),
])
def test_shell_path_is_a_word_no_command_takes_for_an_option(path, word):
    assert shell_path(path) == word


@pytest.mark.parametrize("text, half", [
    ("plain é → 作 \U0001f600", None), ("\udc80 \udcff", None),  # the bytes surrogateescape holds
    ("a\ud800", "\\ud800"), ("\udc7f", "\\udc7f"), ("\udd00", "\\udd00"), ("\udfff", "\\udfff"),
    ("\udc80\udbff\ud910", "\\udbff"),  # the first one
])
def test_lone_surrogate_names_the_first_half_of_a_pair_no_encoder_can_write(text, half):
    assert lone_surrogate(text) == half


def test_texts_walks_a_tree_for_every_text_with_its_path():
    tree = {"name": "a", "task": {"processes": [{"cmdline": "echo"}, "x", 3, None], "on": True},
            "n": 1.5, "empty": {}, "none": []}
    assert list(texts(tree, "job")) == [("job.name", "a"), ("job.task.processes[0].cmdline", "echo"),
                                        ("job.task.processes[1]", "x")]
    assert list(texts("top", "t")) == [("t", "top")]
    assert list(texts(7, "t")) == []


def test_strings_are_the_texts_of_a_tree_in_the_same_order_without_their_paths():
    tree = {"name": "a", "task": {"processes": [{"cmdline": "echo"}, "x", 3, None, ["y", {"z": "w"}]], "on": True},
            "n": 1.5, "empty": {}, "none": [], "last": "b"}
    assert list(strings(tree)) == [text for _, text in texts(tree, "job")] == ["a", "echo", "x", "y", "w", "b"]
    assert list(strings("top")) == ["top"]
    assert list(strings(7)) == []
