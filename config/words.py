"""Numbers and counts in words, for the reasons the pure machines write, and text made
safe to print. PURE.

Owns the two helpers every reason sentence uses: `plural(3, "attempt")` → "3 attempts"
and `number(5.0)` → "5"; `did_you_mean`, the tail of every "unknown name" message;
`shell_word` and `shell_path`, a word of a command a message suggests; `columns` and `pad`, a table cell's width as a terminal shows it; and
`printable`, which every printer (`stoker run`'s console,
`stoker status`, `stoker inspect`, the text log, `stoker: error:` lines, the observer's
pages) passes text through so that control characters from a health endpoint's body, a
process's output or a crafted checkpoint never reach the operator's terminal as escape
sequences, and a name's bytes that are not UTF-8 (a sandbox `b'/tmp/sb-\\xff'`, which
Python holds as the surrogate `'\\udcff'`) show as `\\xff`, as `stoker tail` shows them:
never as a raw byte a terminal may obey (0x9b is a CSI), nor as a character no UTF-8
encoder can write (the observer's page failed with a 500); a C1 control character (U+009B,
UTF-8 `\\xc2\\x9b`) as `\\u009b`, so that it and the byte 0x9b never read alike. `lone_surrogate` finds half of a
UTF-16 surrogate pair in a config's text (JSON's `"\\ud910"`), which no encoder can write and
the loader refuses, and `texts` walks a tree for every text and its path (`strings`, for
the texts alone). No I/O, no clock, no logging; config is the bottom layer, so that the
health policy and the executor's planner can both use it.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

# C0 controls, DEL and C1 controls (0x9b is a one-byte CSI to many terminals), and lone
# surrogates: the bytes surrogateescape decoded (U+DC80-U+DCFF), any other unpaired one.
# Compiled at its first use (`re`'s own cache keeps it), as are the shell's two below: a class
# that reaches past U+00FF takes `re` about 1 ms to compile (0.5 for PRINTF's), and these
# three were 2.5 ms of every command's import of this module, before a first run's planning
# child is forked too (`executor/local/planahead.py`), which never uses them: their users
# are message lines, written once the runs started.
_CONTROL = "[\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_WIDE = ("W", "F")  # East Asian widths a terminal shows in two columns: wide, fullwidth
# repr's escape of a surrogateescape byte (`\\udcff`), not one of a backslash repr doubled
_REPR_SURROGATE = r"(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])"  # (`quoted`'s: compiled at its first use)
_SHELL_PLAIN = r"[A-Za-z0-9@%+=:,./_-]+"  # shlex.quote's safe characters, ASCII only
# What a log line escapes besides `_CONTROL`: the line and paragraph separators (U+2028, U+2029: a line
# end to `str.splitlines` and other readers) and every format character (Unicode 15.1's Cf, Python 3.13's:
# the bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks
# U+200E/U+200F and U+061C, the zero-width U+200B-U+200D and U+2060, the soft hyphen, the
# BOM, the tags, the Egyptian hieroglyph controls U+13430-U+1343F, of which 3.11's Unicode 14
# has the first 9): a terminal reorders the text around one, or shows nothing for it, so that
# a line quoting a name that holds one reads as another line.
_FORMAT = ("\u2028\u2029\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
           "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
           "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
_LOGGED = _CONTROL[:-1] + _FORMAT + "]"
FORMAT_CHARACTERS = _FORMAT  # a character class's body: for `--log-format json`'s escapes too
# A shell word's escapes: `_LOGGED`'s too, so that a log line quoting a command leaves it as it is
_SHELL_ESCAPED = "[\\\\'" + _LOGGED[1:]
_PRINTF_ESCAPED = "^-|[!\\\\'%" + _LOGGED[1:]  # and a leading `-`


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 process", "2 processes", "3 attempts"; `many` for an irregular plural."""
    if count == 1:
        return f"{count} {word}"
    if many is None:
        many = word + "es" if word.endswith("s") else word + "s"
    return f"{count} {many}"


def a_kind(value: object) -> str:
    """The name of `value`'s type with its article, for a message: "an int", "a str"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def number(x: float) -> str:
    """A number as a reason shows it: rounded to 3 places, without a trailing ".0"
    (5.0 → "5", 0.25 → "0.25", 1.23456 → "1.235")."""
    r = round(x, 3)
    return str(int(r)) if r == int(r) else repr(r)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`; did you mean 'cmdline'?` naming the closest of `known`, else `; the known names
    are a, b, c` (empty when there are none): the tail of an "unknown name" message."""
    import difflib  # an error path: not loaded by a start that makes no such message

    names = sorted(set(known))
    close = difflib.get_close_matches(word, names)  # at most 3, similar to 0.6: its defaults
    if close:
        return "; did you mean " + " or ".join(quoted(c) for c in close) + "?"
    return "; the known names are " + ", ".join(names) if names else ""


def columns(text: str) -> int:
    """The terminal columns `text` takes: an East Asian wide character (`作`) two, a
    combining one (the accent of a decomposed `é`) none."""
    if text.isascii():
        return len(text)
    import unicodedata  # only a name that is not ASCII needs it

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in _WIDE else 1
               for c in text)


def pad(text: str, width: int) -> str:
    """`text` and spaces after it up to `width` terminal columns (`str.ljust` counts
    characters: a column of Chinese names ran two columns past the next per character)."""
    return text + " " * (width - columns(text))


def printable(text: str) -> str:
    """`text` with every control character written out as an escape (`\\x1b`, `\\n`, ...),
    so it shows as one line and never drives the terminal; a byte that was not UTF-8 (its
    surrogate escape) as `\\xff`."""
    return re.sub(_CONTROL, _escape, text)


def loggable(text: str) -> str:
    """`printable`, and each line separator and format character written out too (`\\u202e`,
    `\\U000e0001`): the one way Stoker's log lines (`config.logline`, the text log of
    `executor.cli.logsetup`, `stoker: error:` lines) write what they quote (an operator's
    process name, a control request, a path, a config's names), so that a right-to-left
    override in `stoker restart`'s NAME cannot turn the rest of its line around. Not for a
    process's output (the observer's log page, `stoker tail`): its text may be right-to-left."""
    if text.isascii() and text.isprintable():  # the common case: nothing to escape
        return text
    return re.sub(_LOGGED, _escape, text)


def quoted(value: object) -> str:
    """`repr(value)`, for a message that quotes what it was given, with a byte that was not
    UTF-8 (a name from argv, the environment or a file, held as its surrogate escape)
    written `\\xff`, as `printable` writes it everywhere else, not `\\udcff`. ASCII-safe
    as repr is: no lone surrogate reaches an encoder."""
    text = repr(value)
    if "\\udc" not in text:  # no escape to rewrite: nor the pattern compiled (a new config's
        return text  # planning child quotes its path before its plan: 60 µs)
    return re.sub(_REPR_SURROGATE, r"\1\\x\2", text)


def shell_word(text: str) -> str:
    """`text` as one word a POSIX shell reads back as `text`, for a command a message suggests
    (`stoker kill WORD`): as `shlex.quote` writes it (`'a b'`, `'it'"'"'s'`) when it is all
    printable, else as `"$(printf 'FORMAT')"`, each control character and each byte that was
    not UTF-8 written as printf's escape (`"$(printf 'a\\nb')"`, `"$(printf '\\377')"`), so
    that the line stays one line, in dash as in bash (dash has no `$'...'`). One that ends
    in a line break, which `$(...)` drops: as `$'...'` (bash, zsh, ksh, busybox sh; not dash).
    Not `quoted`: a shell reads repr's `"it's $HOME"` with `$HOME` expanded, and its `'\\n'`
    as two characters. Printable ASCII holds none of `_LOGGED`'s characters: asked first, it
    spares a run's first report `re`'s compile of that class (0.5 ms: `stoker run`'s note of
    its `stoker status` command, made as the sandbox is held)."""
    if (text.isascii() and text.isprintable()) or not re.search(_LOGGED, text):
        if text and re.fullmatch(_SHELL_PLAIN, text):
            return text
        return "'" + text.replace("'", "'\"'\"'") + "'"
    if text.endswith("\n"):
        return "$'" + re.sub(_SHELL_ESCAPED, _shell_escape, text) + "'"
    return "\"$(printf '" + re.sub(_PRINTF_ESCAPED, _printf_escape, text) + "')\""


def shell_path(path: str) -> str:
    """`shell_word` of a path, with `./` before a relative one that starts with `-` (`-dir`):
    the same file, which no command's argparse reads as an option (`stoker kill -dir` was
    refused: `unrecognized arguments`), wherever the word stands among the options."""
    return shell_word("./" + path if path.startswith("-") else path)


def _printf_escape(match: re.Match[str]) -> str:
    """A character of printf's format as it writes it (a leading `-`: not taken for an option;
    `!` as `\\041`: the word stands in double quotes, where a shell's history expansion that
    does not see the single quotes inside `$(...)` would read `!b` as an event)."""
    char = match.group()
    if char in "\\%":
        return char * 2
    if char in "'-!":
        return {"'": "'\\''", "-": "\\055", "!": "\\041"}[char]
    if char in _NAMED:
        return _NAMED[char]
    errors = "surrogateescape" if 0xDC80 <= ord(char) <= 0xDCFF else "surrogatepass"  # a byte; a lone half
    return "".join(f"\\{byte:03o}" for byte in char.encode("utf-8", errors))


def _shell_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in ("\\", "'"):
        return "\\" + char
    code = ord(char)
    if 0x80 <= code <= 0xFF:  # a C1 control, the soft hyphen: characters, bash writes them in the locale's encoding
        return f"\\u{code:04x}"
    return _escape(match)  # a C0 control, DEL, a byte surrogateescape stands for, a lone surrogate


def lone_surrogate(text: str) -> str | None:
    """The first character of `text` that no UTF-8 encoder can write, as `\\ud910`: half of
    a UTF-16 surrogate pair (JSON's `"\\ud910"` escape, Python's `'\\ud910'`), no character
    at all. None when there is none; the bytes surrogateescape stands for (U+DC80-U+DCFF)
    are written as those bytes, so they are not counted."""
    try:  # surrogateescape writes U+DC80-U+DCFF as their bytes, and stops at the first other
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        return f"\\u{ord(text[error.start]):04x}"
    return None


def half_pair_problem(path: str, shown: str, half: str) -> str:
    """What is wrong with the text at `path` (`shown` as a message shows it) that holds `half`."""
    return (f"{path} = {shown} holds {half}, half of a UTF-16 surrogate pair: no character, "
            "so no process, file or log can hold it")


def json_half_pair(tree: Any, path: str) -> str | None:
    """The problem of the first key or text of a JSON document's tree that holds a surrogate,
    below `path` ("" for a document's top). Its text was strict UTF-8, so each came from a
    `"\\udcff"` escape, the U+DC80-U+DCFF `lone_surrogate` lets by too (surrogateescape's
    bytes in an argument): such a cmdline ran as byte 0xff. None when there is none."""
    stack: list[tuple[str, Any]] = [(path, tree)]  # no recursion: a tree as deep as json reads
    while stack:
        at, value = stack.pop()
        if isinstance(value, str):
            if half := _surrogate(value):
                return half_pair_problem(at, repr(value), half)
        elif isinstance(value, list):
            stack.extend((f"{at}[{i}]", v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            for key in value:
                if half := _surrogate(key):
                    return half_pair_problem(f"a key of {at or 'the document'}", repr(key), half)
            stack.extend((f"{at}.{k}" if at else k, v) for k, v in reversed(value.items()))
    return None


def _surrogate(text: str) -> str:
    """The first surrogate of `text`, as `\\udcff` ("": none): the strict encoder stops at it
    (no pattern compiled as this module loads: `lone_surrogate`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"\\u{ord(text[error.start]):04x}"
    return ""


def leaves(tree: Any, path: str) -> Iterable[tuple[str, Any]]:
    """Every value in a tree of plain values (dicts, lists, scalars) that is neither a dict
    nor a list, with its path: `("job.task.processes[0].cmdline", "echo hi")`."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, f"{path}.{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, tree


def texts(tree: Any, path: str) -> Iterable[tuple[str, str]]:
    """Every text in a tree of plain values with its path (`leaves`)."""
    return ((p, v) for p, v in leaves(tree, path) if isinstance(v, str))


MAX_INT_DIGITS = sys.get_int_max_str_digits() or 2**63  # (0: no limit, by PYTHONINTMAXSTRDIGITS=0)


def long_integers(tree: Any, path: str) -> Iterable[str]:
    """The path of every integer in a tree of plain values (`leaves`) that has more digits
    than Python writes as text (`sys.get_int_max_str_digits()`, 4300): `str()` of one raises
    ValueError in a message, `stoker inspect`, the checkpoint's JSON and the TaskInfo alike.
    An .aurora file makes one with `10**5000`; its text (`'1' * 5000`) is refused apart."""
    return (p for p, v in leaves(tree, path) if isinstance(v, int) and too_many_digits(v))


def long_integer_problem(path: str) -> str:
    """What is wrong with the integer at `path` that `long_integers` found: the words of a
    config's check and of a task document's (`config.document`), the same."""
    return (f"{path} is an integer of more than {MAX_INT_DIGITS} digits: more than any count or size "
            "a task can use, and more than Python writes as text")


def too_many_digits(value: int) -> bool:
    """Whether `value` has more digits than `str()` writes (MAX_INT_DIGITS): exactly, as
    the count from its bits (`integer_chars`, a sign counted, up to 2 over) is not: 10**4299,
    of 4300 digits, which `str()` writes, was counted 4301."""
    if value.bit_length() < 14000:  # under 4215 digits
        return False
    return sys.get_int_max_str_digits() != 0 and abs(value) >= 10**MAX_INT_DIGITS


def integer_chars(value: int) -> int:
    """The characters `str(value)` writes, or, past Python's limit where it raises, at
    least that many (counted from the bits: each bit is log10(2) = 0.30103 of a digit)."""
    if value.bit_length() < 14000:  # under 4215 digits: `str` writes it
        return len(str(value))
    return value.bit_length() * 30103 // 100000 + 2  # digits, rounded up, and a sign


def strings(tree: Any) -> Iterable[str]:
    """Every text in a tree of plain values, in order, without its path (`texts` builds
    each path too): what the template checks search and count."""
    pending = [tree]  # a stack, not recursion: each text comes out at once, not up every level
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            pending.extend(reversed(value.values()))
        elif isinstance(value, list):
            pending.extend(reversed(value))


def printable_lines(text: str) -> str:
    """`printable` for text of several lines: the line breaks stay, the rest is escaped."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's: the byte it stands for
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:  # a format character past the BMP (a tag)
        return f"\\U{code:08x}"
    if code >= 0x80:  # any other lone surrogate; a format character, a line separator; a C1
        return f"\\u{code:04x}"  # control and the soft hyphen too: `\\x85` is byte 0x85's
    return _NAMED.get(char) or f"\\x{code:02x}"
