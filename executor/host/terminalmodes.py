"""`stoker run`'s terminal, its modes (`stty`) put back as the run found them.

A process of the task whose logger is the console writes to the operator's terminal, and
may change its modes there (`stty raw -echo`, or a program killed before it restored
them); it is no job of the shell's (each process of the task runs in a session of its own),
so once `stoker run` ended the shell echoed nothing and its lines never went back to the
margin (`reset` needed). The entry point keeps the modes before the task's first process
starts, an early start's included (`executor/cli/start.py`), and `LocalRun` puts them back
as the run ends, saying so. Only for a `stoker run` in the foreground of its terminal: in
the background the terminal's modes are the foreground job's; nor for one whose stdout is a
pipe (`stoker run JOB | less`): the modes are the pipeline's reader's. Standard library only.
"""
from __future__ import annotations

import os
import stat
import termios

_kept: list = []  # the terminal's descriptor and its termios attributes, as the run found them


def keep() -> None:
    """For a `stoker run` in the foreground of a terminal: the terminal's modes (`stty`) as
    they are before the task's first process starts, which `put_back` puts back as the
    run ends. Nothing for a run without a terminal, in the background, or piped."""
    fd = _foreground_terminal()
    if fd is None or _piped():
        return
    try:
        _kept[:] = [fd, termios.tcgetattr(fd)]
    except termios.error:  # (no OSError) gone meanwhile: nothing to keep
        return


def put_back() -> bool:
    """Whether the terminal `keep` found had other modes now and they were put back: a task's process that writes to the terminal (a `console` logger's) and ran
    `stty raw -echo` on it, or a program that sets them and was killed, left the operator's
    shell with no echo and lines that never return to the margin. Not once `stoker run` is
    no longer the terminal's foreground job (its modes are then that job's)."""
    if not _kept or _foreground_terminal() != _kept[0]:
        return False
    fd, kept = _kept
    try:
        if termios.tcgetattr(fd) == kept:
            return False
        termios.tcsetattr(fd, termios.TCSANOW, kept)
    except termios.error:  # the terminal is gone (hung up): nothing to put back
        return False
    return True


def _foreground_terminal() -> int | None:
    """The first of descriptors 0, 1 and 2 that is this process's controlling terminal with
    its process group in the foreground; None when none is."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:  # a terminal, but not this process's controlling one
            continue
    return None


def _piped() -> bool:
    """Whether stdout is a pipe or a socket: `stoker run JOB | less`, whose reader, a process
    of the same foreground job, owns the terminal's modes (a pager sets its own as it starts
    and puts them back as it quits). Kept and put back, they were the pager's raw modes,
    after it quit (the shell left without echo, said to be a task's doing), or the shell's,
    under a pager still showing."""
    try:
        mode = os.fstat(1).st_mode
    except OSError:  # no descriptor 1
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
