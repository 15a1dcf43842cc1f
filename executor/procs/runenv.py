"""The environment of a task's runs, with the standard library only: the markers every run
and its descendants carry, the env every run starts from, and `.thermos_profile`.

`spawn.py` starts runs with these; the early start (`executor/cli/launch.py`) computes the
same env for the runs it starts before the rest of Stoker is loaded, and the supervisor
that adopts them checks it is the env it would have given them.

- `STOKER_TASK_MARKER=<marker>` in every process of the task, `STOKER_RUN_MARKER=
  <marker>/<process>/<run>` in every process of one run: how the supervisor and the
  watchdog find what is the task's (`containment.py`, `watchdog.py`).
- `task_env`: what the caller gives (less entries with NUL bytes, which no exec can carry),
  `HOME` = the sandbox unless set, the task marker; `run_env` adds the run marker and,
  when the sandbox has one, `BASH_ENV` = SANDBOX/.thermos_profile, sourced by every run's
  bash as in Thermos (`profile_now`: one stat, asked once for the runs started together),
  written as bash reads that variable (`bash_env`: its value is expanded first).
- `exec_text`: a command line as exec gets it. The config is UTF-8 text, so a `cmdline`
  (or a shell health check) Python's file system encoding cannot hold goes as UTF-8: under
  `LC_ALL=C` with `PYTHONUTF8=0` (ASCII) `echo café` failed the task with "executor
  internal error: UnicodeEncodeError". What it can hold goes as Python would pass it, so a
  name Stoker was given (a sandbox, a `--bind` value) goes back as the bytes it came as.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

TASK_MARKER = "STOKER_TASK_MARKER"
RUN_MARKER = "STOKER_RUN_MARKER"
PROFILE = ".thermos_profile"  # sourced by every run's bash through BASH_ENV when it exists
_BACKSLASHED = ("\\", "$", "`")  # what bash expands in BASH_ENV's value (a word in double quotes)
_CTLESC = "\x01"  # bash's own quoting byte: it quotes the character after it, and goes
# BASH_ENV's value for each of those: a backslash before the first three, CTLESC doubled.
_BASH_ESCAPES = {ord(c): "\\" + c for c in _BACKSLASHED} | {ord(_CTLESC): _CTLESC * 2}
_FS_UTF8 = sys.getfilesystemencoding() == "utf-8"  # then UTF-8 with surrogateescape already


def exec_text(text: str) -> str | bytes:
    """`text` (a command line) for exec: as it is when the file system encoding holds it,
    else its UTF-8 bytes (surrogate escapes back to the bytes they stand for)."""
    if _FS_UTF8:
        return text
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def run_marker(task_marker: str, process: str, run: int) -> str:
    return f"{task_marker}/{process}/{run}"


def run_env(base: Mapping[str, str], task_marker: str, process: str, run: int,
            bash_env: str | None = None) -> dict[str, str]:
    """The run's env: `base`, its run marker, and `BASH_ENV` = `bash_env` when given
    (`profile_now`'s answer, asked once for the runs started together)."""
    env = dict(base)
    env[RUN_MARKER] = run_marker(task_marker, process, run)
    if bash_env is not None:
        env["BASH_ENV"] = bash_env
    return env


def profile_path(sandbox: str | os.PathLike[str]) -> str:
    return os.path.join(os.path.abspath(sandbox), PROFILE)


def profile_now(profile: str) -> str | None:
    """`BASH_ENV`'s value for `profile` (SANDBOX/.thermos_profile, `bash_env`) when that file
    exists now, else None (one stat: a process that writes it makes every later launch
    source it, as in Thermos)."""
    return bash_env(profile) if os.path.exists(profile) else None


def bash_env(path: str) -> str:
    """`path` as `BASH_ENV`'s value: bash expands that value as a word in double quotes
    (parameters, `$(...)`, backquotes) before it reads the file, so each `\\`, `$` and `` ` ``
    of the path goes with a backslash before it, and each \\x01 (bash's CTLESC, which quotes
    the character after it and goes) doubled. Was: a sandbox named `sb$HOME` never had its
    profile sourced, one named `sb$(cmd)` ran `cmd` as each process started, and one with
    a \\x01 byte had its profile looked for at a path without it."""
    return path.translate(_BASH_ESCAPES)


def bash_env_path(value: str) -> str:
    """The path a `BASH_ENV` value names, as bash reads it: a backslash before a `\\`, `$` or
    `` ` `` taken away, any other kept; a \\x01 taken away, the character after it kept
    (`bash_env` undone)."""
    path, at = [], 0
    while at < len(value):
        if value[at] == _CTLESC or (value[at] == "\\" and value[at + 1:at + 2] in _BACKSLASHED):
            at += 1
            if at == len(value):
                break
        path.append(value[at])
        at += 1
    return "".join(path)


def seen_through(env: Mapping[str, str], translate: Callable[[Mapping[str, str]], dict[str, str]]) -> dict[str, str]:
    """`translate(env)` (a filesystem image's wrapper's: the sandbox's paths as the task sees
    them) given the path `BASH_ENV` names, its answer's `BASH_ENV` written for bash again; one
    it leaves as it was (not the sandbox's: the environment's own, `preserve_env`'s) goes as
    given, written by whoever set it (a `$HOME` in it is for bash to expand)."""
    if "BASH_ENV" not in env:
        return translate(env)
    path = bash_env_path(env["BASH_ENV"])
    seen = translate({**env, "BASH_ENV": path})
    seen["BASH_ENV"] = env["BASH_ENV"] if seen["BASH_ENV"] == path else bash_env(seen["BASH_ENV"])
    return seen


def with_profile(env: dict[str, str], sandbox: str | os.PathLike[str]) -> dict[str, str]:
    """`env` with `BASH_ENV` = SANDBOX/.thermos_profile when that file exists now."""
    profile = profile_now(profile_path(sandbox))
    if profile is not None:
        env["BASH_ENV"] = profile
    return env


def task_env(env: Mapping[str, str], sandbox: str | os.PathLike[str], task_marker: str) -> dict[str, str]:
    """The env every run and health command starts from (entries with NUL bytes dropped)."""
    base = {k: v for k, v in env.items() if "\0" not in k and "\0" not in v and "=" not in k}
    base.setdefault("HOME", str(sandbox))
    base[TASK_MARKER] = task_marker
    base.pop(RUN_MARKER, None)  # set per run; never inherit one from our own parent
    return base
