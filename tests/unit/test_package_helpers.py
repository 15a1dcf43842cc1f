"""The helpers of `executor/__init__.py` every layer may import: an errno in words, the
standard streams flushed before an `os._exit`, the version a build stamped, the package's
one lazy attribute."""
from __future__ import annotations

import errno
import sys
import types
from pathlib import Path

import pytest

import executor
from executor import describe_os_error, flush_standard_streams, version


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOENT, "No such file or directory"), "No such file or directory (ENOENT)"),
    # words Stoker raised of its own are kept: not the errno's standard ones
    (OSError(errno.ENOTDIR, "/dev/null is a character device, not a directory"),
     "/dev/null is a character device, not a directory (ENOTDIR)"),
    (OSError(errno.EACCES, ""), "Permission denied (EACCES)"),  # none given: the errno's own
    (OSError(errno.EMFILE, None), "Too many open files (EMFILE)"),
    (OSError(4242, "Odd"), "Odd (4242)"),  # a number errno has no name for
    (OSError("no errno at all"), "no errno at all"),
])
def test_an_errno_is_put_into_words_with_its_name(error, words):
    assert describe_os_error(error) == words


class _Stream:
    def __init__(self, fails: type[BaseException] | None) -> None:
        self.fails, self.flushed = fails, 0

    def flush(self) -> None:
        self.flushed += 1
        if self.fails is not None:
            raise self.fails("gone")


@pytest.mark.parametrize("fails", [BrokenPipeError, ValueError, AttributeError])
def test_stderr_is_flushed_though_stdout_could_not_be(monkeypatch, fails):
    out, err = _Stream(fails), _Stream(None)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    flush_standard_streams()
    assert (out.flushed, err.flushed) == (1, 1)


def test_the_version_is_the_one_a_build_stamped_else_the_base_version(monkeypatch):
    stamped = types.ModuleType("executor._version")
    stamped.VERSION = "0.1.0+g1a2b3c4.dirty"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "executor._version", stamped)
    assert version() == executor.__version__ == "0.1.0+g1a2b3c4.dirty"
    monkeypatch.setitem(sys.modules, "executor._version", None)  # an ImportError: none built
    assert version() == executor.BASE_VERSION


def test_an_attribute_the_package_lacks_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match=r"^module 'executor' has no attribute 'nothing_here'$"):
        executor.nothing_here  # noqa: B018


DELETED = "the working directory was deleted, so a relative path"


def test_a_working_directory_that_exists_is_not_gone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert executor.working_directory_gone() is False


@pytest.mark.parametrize("defaults, said", [
    (False, f"{DELETED} cannot be resolved (cd to a directory that exists, or give an absolute path)"),
    (True, f"{DELETED}, or a default that is the working directory (the sandbox `stoker run` makes there, `stoker "
           "status` with no SANDBOX), cannot be resolved (cd to a directory that exists, or give absolute paths)"),
])
def test_a_deleted_working_directory_is_gone_and_says_so(tmp_path, monkeypatch, defaults, said):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert executor.working_directory_gone() is True
    assert executor.working_directory_unnamed(defaults=defaults) == said


def test_a_deleted_working_directory_whose_path_was_made_again_is_named_to_cd_to(tmp_path, monkeypatch):
    again = tmp_path / "again"
    again.mkdir()
    monkeypatch.chdir(again)
    again.rmdir()
    again.mkdir()  # `rm -rf DIR; mkdir DIR` beside a shell in DIR
    assert executor.working_directory_unnamed() == (
        f"{DELETED} cannot be resolved (the {str(again)!r} made since is another directory: cd to it again, or give "
        "an absolute path)")
    again.rmdir()
    (tmp_path / "again").write_text("")  # a file made there is no directory to cd to
    assert executor.working_directory_unnamed().endswith("(cd to a directory that exists, or give an absolute path)")


@pytest.mark.parametrize("named", ["", "/nonexistent/stoker-test/gone"])
def test_a_deleted_working_directory_with_no_path_or_none_there_was_not_made_again(named):
    assert executor._made_again(named) is False


def _path_without(*entries: str) -> list[str]:
    return [entry for entry in sys.path if entry not in entries]


@pytest.mark.parametrize("first", ["", "{here}"])  # `-c`'s empty entry; `-m`'s working directory
def test_the_working_directory_python_m_put_first_is_taken_off(tmp_path, monkeypatch, first):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    rest = _path_without("", str(tmp_path))
    monkeypatch.setattr(sys, "path", [first.format(here=tmp_path), *rest])
    executor.forget_working_directory()
    assert sys.path == rest


@pytest.mark.parametrize("first", ["/opt/elsewhere", ""])
def test_a_first_entry_not_the_working_directory_or_stokers_own_checkout_stays(monkeypatch, first):
    here = Path(executor.__file__).parents[1]  # run from Stoker's checkout: its packages are there
    monkeypatch.chdir(here if first == "" else "/")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    searched = [first, *_path_without(first)]
    monkeypatch.setattr(sys, "path", list(searched))
    executor.forget_working_directory()
    assert sys.path == searched
