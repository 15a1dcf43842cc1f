"""Python's locale coercion undone for the processes Stoker starts (executor/cli/start.py,
`exec_locale`): LC_CTYPE goes back to what the environment held at exec."""
from __future__ import annotations

import pytest

from executor.cli.start import exec_locale


@pytest.mark.parametrize(("at_exec", "now", "wanted"), [
    (b"PATH=/bin\0LANG=C\0", "C.UTF-8", None),                  # not given: removed
    (b"LC_CTYPE=C\0LANG=C\0", "C.UTF-8", "C"),                  # given as C: put back
    (b"LC_CTYPE=POSIX\0", "C.utf8", "POSIX"),
    (b"LC_CTYPE=C.UTF-8\0", "C.UTF-8", "C.UTF-8"),              # given so: kept
    (b"LANG=C\0", "en_US.UTF-8", "en_US.UTF-8"),                 # set since, not by coercion: kept
    (None, "C.UTF-8", "C.UTF-8"),                                # no /proc: nothing known, kept
])
def test_lc_ctype_is_what_the_environment_held_at_exec(at_exec, now, wanted):
    environ = {"LANG": "C", "LC_CTYPE": now}
    exec_locale(environ, at_exec)
    assert environ.get("LC_CTYPE") == wanted
    assert environ["LANG"] == "C"


def test_no_lc_ctype_is_left_alone():
    environ = {"LANG": "C"}
    exec_locale(environ, b"LANG=C\0")
    assert environ == {"LANG": "C"}
