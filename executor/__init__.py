"""Stoker's executor: one task's life, the two front-ends that ask for it, and the CLI.

The folder tree is the architecture (docs/design.md draws it):

    cli/     argv → commands: run, executor, inspect, status, ps, tail, kill, restart,
             observe; the only package that configures logging.
    mesos/   the Mesos front-end: the v1 executor API (RecordIO, wire format, session,
             reconnect policy, HTTP transport, driver) and the callbacks that drive a task.
    local/   the `stoker run` front-end: the one-machine scheduler (service rules, ports,
             sandbox, console output).
    observe/ `stoker observe`: the read-only web view of the host's tasks (pages, JSON,
             logs, Prometheus metrics), over the registry and the task inspection; only
             that command loads it (`stoker status`: `usage` and `taskusage` alone).
    task/    one task's life, whoever asked for it: the planner, the status machine, kill
             staging and the owner's side of it (killing), checkpoint records, the journal
             that writes them and their compaction, the lifecycle endpoints and the
             TaskOwner loop.
    host/    one host's view of its tasks: the host registry, the sandbox lock, the control
             socket (`stoker kill`, `stoker restart`) and the session that holds them; and
             the supervisor's own stop signals, relayed to one thread.
    procs/   Linux process containment: fork/exec, the one reaper, process trees, the
             watchdog and its keeper, the runs' logs (kept open, staged, pumped), shell
             commands, reading a sandbox safely. Adapters only.
    events.py, logs.py   the shared vocabulary (pure events and states) and `log_event`.
    codecache.py         attrs' generated methods, compiled once and kept like `.pyc` files
                         (the entry point, cli/start.py, installs it first).
    nodocs.py            every module loaded after the entry point's first lines compiled
                         without its docstrings, kept like `.pyc` files.

Import rules (tests/unit/test_layering.py fails on a wrong-way import):

    cli → {mesos, local, observe} → task → host → procs;   everything may import events and logs
    mesos and local never import each other: two front-ends over one task API; observe
    imports neither (it only reads)
    procs imports neither task nor host: it posts events through the callbacks it is given
    host never imports task: its control thread posts events to the owner's queue
    executor/ may use healthcheck/ and config/; healthcheck/ uses config/ only;
    config/ uses neither

Pure modules (no I/O, threads, clocks or logging; the same test checks their imports) are
listed in that test; each says so in its docstring.
"""
TYPE_CHECKING = False  # not `typing`'s: the first of Stoker's modules, loaded by every command
if TYPE_CHECKING:
    from typing import NoReturn


def _interrupted_quietly() -> None:
    """A Ctrl-C as `stoker` (the console script, `python -m executor ...`) loads its entry
    point, this package the first of Stoker's modules, before `executor.cli.start.run`
    catches one from its first line: exit 130 without a traceback, as a Ctrl-C at any later
    moment of the start (was: Python's traceback of KeyboardInterrupt, while `executor.cli`
    and `executor.cli.start` loaded, some 1 ms). Before this line, the interpreter's own
    start (docs/contract.md §9)."""
    import sys

    found = sys.excepthook  # a hook set before (a distribution's sitecustomize) gets the rest

    def quietly(kind: type[BaseException], value: BaseException, traceback: object) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            return found(kind, value, traceback)  # type: ignore[arg-type]
        import os

        os._exit(130)

    quietly.stoker_quiet = True  # type: ignore[attr-defined]  # see QUIET
    sys.excepthook = quietly


# The attribute of a loading hook that ends a Ctrl-C quietly (os._exit(130)): this package's,
# set as `stoker` loads, and stoker.pyz's (tools/zipapp_main.py, set before this package is
# unpacked). Once the log is configured, its hook takes a Ctrl-C such a hook would have, and
# exits as `leave` does (executor/cli/logsetup.py).
QUIET = "stoker_quiet"
# The stop signals whose `Stopped` (executor/cli/start.py), or SIGINT's KeyboardInterrupt, a
# finalizer or a weakref callback dropped as the command loaded: the signal relay, once up,
# sends each again (executor/host/signals.py; `stoker observe` raises them, having none).
DROPPED_STOPS: list[int] = []


def _started_as_stoker(argv: list[str], orig_argv: list[str]) -> bool:
    """Whether this process is `stoker` (a script of that name) or `python -m executor`, as
    the package loads: `sys.argv[0]` is then "-m" for any `-m`, and the word before the
    arguments in `sys.orig_argv` names the module (`executor`, or glued: `-mexecutor`), not
    `python -m executor.codecache`, nor a `-m` of a package that imports Stoker's."""
    if not argv or argv[0] != "-m":
        return bool(argv) and argv[0].rpartition("/")[2] == "stoker"
    if len(orig_argv) < len(argv) + 1:
        return False
    word = orig_argv[-len(argv)]
    return word == "executor" or (word.startswith("-") and word.partition("m")[2] == "executor")


def forget_relative_pythonpath() -> None:
    """The directories PYTHONPATH names relative to the working directory (an empty entry
    is the working directory itself: `export PYTHONPATH=$PYTHONPATH:/opt/lib` with
    PYTHONPATH unset) taken off `sys.path`, in a process started as `stoker` (as the package
    loads, before any other of Stoker's modules), by the entry point (`stoker.pyz`, whose
    argv[0] is not `stoker`), and by `python -m executor.codecache`: Python
    searches them before the standard library and Stoker's own packages, so a project's
    `config.py` stood in for Stoker's `config` package (a traceback), and a file a job
    fetched into its Mesos sandbox (the executor's working directory) was imported by the
    executor, as root. A directory searched anyway stays (`_searched_anyway`); the task's
    processes still get PYTHONPATH as it was given (docs/contract.md §8)."""
    import os
    import sys

    given = "" if sys.flags.ignore_environment else os.environ.get("PYTHONPATH", "")
    if not given:
        return
    entries = given.split(os.pathsep)
    relative = {os.path.abspath(entry) for entry in entries if not os.path.isabs(entry)}
    if relative:
        relative -= _searched_anyway(entries)
        sys.path[:] = [entry for entry in sys.path if entry not in relative]


def _searched_anyway(entries: "list[str]") -> "set[str]":
    """The directories searched whatever PYTHONPATH's relative entries: its absolute ones
    (the operator's), Stoker's own (a checkout run in place), the standard library's and
    site's (Python lists each once: run from one of them, the relative entry's place was its
    only one, and `__future__` or attrs could no longer be imported)."""
    import os
    import sys

    kept = {os.path.normpath(entry) for entry in entries if os.path.isabs(entry)}
    stdlib = os.path.dirname(os.__file__)
    kept.update((os.path.dirname(os.path.dirname(os.path.abspath(__file__))), stdlib,
                 os.path.join(stdlib, "lib-dynload")))
    site = sys.modules.get("site")  # not with -S
    if site is not None:
        kept.update(site.getsitepackages())
        if site.ENABLE_USER_SITE:
            kept.add(site.getusersitepackages())
    return kept


def _as_stoker() -> None:
    """As this package loads in a process started as `stoker`: PYTHONPATH's relative
    directories off `sys.path`, and the quiet Ctrl-C. A process that only imports Stoker's
    modules keeps Python's own handling."""
    import sys

    if _started_as_stoker(sys.argv, sys.orig_argv):
        forget_relative_pythonpath()
        _interrupted_quietly()


_as_stoker()

BASE_VERSION = "0.1.0"  # setup.py's (a test checks); a build adds the commit to it


def version() -> str:
    """This build's version, as setup.py stamped it from git (`0.1.0+g1a2b3c4`, `.dirty`
    after it when the checkout had changes; executor/_version.py, written by the build),
    else BASE_VERSION (a checkout run in place, an editable install, a build without git).
    Loaded only when asked: `stoker --version`, the executor's first line."""
    try:
        from executor._version import VERSION  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return BASE_VERSION
    return str(VERSION)


def __getattr__(name: str) -> str:
    if name == "__version__":  # `stoker --version`
        return version()
    raise AttributeError(f"module 'executor' has no attribute {name!r}")


def leave(status: int) -> "NoReturn":
    """`sys.exit(status)`; but under Python's inspect mode (`-i`, PYTHONINSPECT), which takes
    a SystemExit for an error (its traceback, exit status 1, and then, on a terminal, a `>>>`
    prompt waiting where the command had ended), the process ends as that exit would end it:
    threading's exit hooks run and its other threads that are not daemons waited for, atexit's
    functions run, the standard streams flushed, exit `status`."""
    import sys

    if not sys.flags.inspect:
        sys.exit(status)
    import atexit
    import os
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # as Python's own exit: threading's
    # exit hooks (a thread pool's idle workers told to end; joined before them, they hung the
    # process for ever), then the threads that are not daemons waited for
    atexit._run_exitfuncs()
    flush_standard_streams()
    os._exit(status)


def flush_standard_streams() -> None:
    """Flush stdout and stderr before an `os._exit`, each as far as it goes: a reader gone
    or no such stream is not an error at exit."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            continue


def describe_os_error(e: OSError) -> str:
    """'No such file or directory (ENOENT)': an errno put into words, as every line says one
    (an UnsafePath, `executor/procs/sandboxfs.py`: its message; one Stoker raised with words
    of its own, `/dev/null is a character device, not a directory (ENOTDIR)`, those). Here,
    in the package every layer may import, with the standard library's builtins alone: the
    early start's sandbox files (sandboxfs) read it before its first fork, and from
    `config.logline`, it loaded `logging`, `typing`, `re` and 40-odd more modules there."""
    import errno  # (builtin, loaded with the interpreter: no file to open, EMFILE or not)
    import os

    if e.errno is None:
        return str(e)
    name = errno.errorcode.get(e.errno, str(e.errno))
    return f"{e.strerror or os.strerror(e.errno)} ({name})"


# A working directory with no name (deleted: `rm -rf` of the directory a shell is in; or
# outside the process's root): docs/contract.md §9
_DEFAULTS = (", or a default that is the working directory (the sandbox `stoker run` makes there, `stoker "
             "status` with no SANDBOX),")


def working_directory_gone() -> bool:
    """Whether this process's working directory has no name (`os.getcwd()` raises
    FileNotFoundError: it was deleted, or is outside this process's root): no relative path
    can be made absolute then (docs/contract.md §9; `working_directory_unnamed` says why)."""
    import os

    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def working_directory_unnamed(defaults: bool = False) -> str:
    """Why a relative path (and with `defaults`, a default that is the working directory)
    cannot be resolved, once `working_directory_gone()`: the directory was deleted (the
    kernel finds nothing under it but `..`), or it exists but has no name from this
    process's root (glibc's getcwd fails alike for one on a filesystem unmounted lazily,
    `umount -l`, or above a chroot entered without cd; was called deleted)."""
    import contextlib
    import os

    link = ""  # what the kernel names it: "PATH (deleted)" once deleted
    with contextlib.suppress(OSError):  # (a chroot without /proc: the link count alone)
        link = os.readlink("/proc/self/cwd")
    deleted = None  # unknown: called deleted
    with contextlib.suppress(OSError):  # (EACCES: a directory this user may not search)
        deleted = os.stat(".").st_nlink == 0  # a directory's name and its own `.` are gone
    if link:
        deleted = bool(deleted) or link.endswith(" (deleted)")
    what, absolute = "a relative path" + (_DEFAULTS if defaults else ""), "absolute paths" if defaults else "an absolute path"
    if deleted is False:
        return (f"the working directory has no name this process can see (it is outside this process's root: "
                f"on a filesystem unmounted lazily, or above a chroot), so {what} cannot be resolved (cd to "
                f"another directory, or give {absolute})")
    named = link.removesuffix(" (deleted)") if link.endswith(" (deleted)") else ""
    if _made_again(named):
        from config.words import quoted

        return (f"the working directory was deleted, so {what} cannot be resolved (the {quoted(named)} made since "
                f"is another directory: cd to it again, or give {absolute})")
    return (f"the working directory was deleted, so {what} cannot be resolved (cd to a directory "
            f"that exists, or give {absolute})")


def _made_again(named: str) -> bool:
    """Whether a directory now at `named`, the deleted working directory's path, is another
    one (a checkout's `rm -rf DIR; mkdir DIR`), not the deleted one itself (the root of a
    bind mount whose source was deleted keeps its path)."""
    import os

    try:
        now, here = os.stat(named), os.stat(".")
    except (OSError, ValueError):  # none there, or the deleted one unreadable: nothing to name
        return False
    return named.startswith("/") and os.path.isdir(named) and (now.st_dev, now.st_ino) != (here.st_dev, here.st_ino)


def forget_working_directory() -> None:
    """For `python -m executor` and `python -m executor.codecache`, before they import the
    rest: `-m` puts the working directory first on sys.path, where a project's own
    `config.py` or `config/` would stand in for Stoker's `config` package (an ImportError's
    traceback). It is taken off again, unless Stoker itself runs from there (a checkout), and
    so are PYTHONPATH's relative directories (`forget_relative_pythonpath`)."""
    import os
    import sys

    forget_relative_pythonpath()
    try:
        here = os.getcwd()
    except FileNotFoundError:  # deleted: `-m` put no working directory on sys.path (was: a traceback)
        return
    if not sys.path or sys.path[0] not in ("", here):
        return
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.realpath(sys.path[0] or os.curdir) != os.path.realpath(ours):
        del sys.path[0]
