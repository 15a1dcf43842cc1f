"""`stoker observe`'s address line (`executor/cli/observe.py`): written once it listens,
READY=1 to systemd after it; a stdout that cannot take it is `cannot write to stdout`,
status 1 (a reader gone: BrokenPipeError, which ends the command quietly), not `cannot
listen`. In this process (tests/e2e/test_unwritable_output.py runs the real command), the
server a real one on 127.0.0.1."""
from __future__ import annotations

import errno
import io
import signal

import pytest

from executor.cli import observe
from executor.cli.main import main

pytestmark = pytest.mark.timeout(30)


class Unwritable:
    """A stdout whose writes fail with `exc`."""

    def __init__(self, exc: OSError) -> None:
        self.exc = exc

    def write(self, _text: str) -> int:
        raise self.exc

    def flush(self) -> None:
        raise self.exc


class Told:
    def __init__(self) -> None:
        self.said: list[str] = []

    def ready(self, status: str) -> None:
        self.said.append(status)


@pytest.mark.parametrize("host, shown", [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")])
def test_the_address_line_then_ready(capsys, host, shown):
    told = Told()
    observe._when_listening("/run/st\x1bker", told)(host, 8080)  # type: ignore[arg-type]
    assert capsys.readouterr() == (f"stoker observe: http://{shown}:8080/ (registry /run/st\\x1bker)\n", "")
    assert told.said == [f"serving http://{shown}:8080/"]


def test_the_line_is_flushed_at_once_to_a_buffered_stdout(monkeypatch):
    """A pipe's stdout is block-buffered: the reader waiting for the address gets it now."""
    written = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(written, encoding="utf-8"))
    observe._when_listening("/r", None)("127.0.0.1", 1)
    assert written.getvalue() == b"stoker observe: http://127.0.0.1:1/ (registry /r)\n"


def test_without_systemd_the_line_alone(capsys):
    observe._when_listening("/r", None)("127.0.0.1", 1)
    assert capsys.readouterr().out == "stoker observe: http://127.0.0.1:1/ (registry /r)\n"


def test_a_line_stdout_cannot_take_is_unwritten_and_systemd_is_not_told(monkeypatch):
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("sys.stdout", Unwritable(full))
    told = Told()
    with pytest.raises(observe.Unwritten) as unwritten:
        observe._when_listening("/r", told)("127.0.0.1", 1)  # type: ignore[arg-type]
    assert unwritten.value.error is full and str(unwritten.value) == str(full)
    assert unwritten.value.__suppress_context__ and told.said == []


def test_unwritten_is_one_error_line_and_status_1_or_a_reader_gone_raised_again(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", Unwritable(OSError(errno.ENOSPC, "No space left on device")))
    assert observe.Unwritten(OSError(errno.ENOSPC, "No space left on device")).said() == 1
    assert capsys.readouterr().err == "stoker: error: cannot write to stdout: No space left on device\n"
    gone = BrokenPipeError(errno.EPIPE, "Broken pipe")
    with pytest.raises(BrokenPipeError) as raised:
        observe.Unwritten(gone).said()
    assert raised.value is gone and raised.value.__suppress_context__
    assert capsys.readouterr() == ("", "")


@pytest.mark.usefixtures("kept_logging")
def test_observe_into_a_full_stdout_says_so_and_ends_with_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "registry"))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)  # (run's SIGTERM handler: not here)
    with open("/dev/full", "w") as full:  # (its descriptor then /dev/null's: the last flush quiet)
        monkeypatch.setattr("sys.stdout", full)
        assert main(["observe", "--port", "0", "--log-level", "WARNING"]) == 1
        monkeypatch.undo()
    assert capsys.readouterr().err == "stoker: error: cannot write to stdout: No space left on device\n"
