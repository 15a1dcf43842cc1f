"""`planfiles.login_name`: the user name `stoker run` binds a job with, found as
`getpass.getuser()` finds it (which it replaces, so that `stoker run` loads neither getpass nor
termios), and `uid N` where getpass would raise."""
from __future__ import annotations

import getpass
import os
import pwd

import pytest

from executor.local.planfiles import login_name

VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


@pytest.mark.parametrize("present", [(), ("USERNAME",), ("LNAME", "USERNAME"), ("USER", "LNAME"),
                                     ("LOGNAME", "USER", "LNAME", "USERNAME"), ("LOGNAME",)])
def test_it_finds_the_name_getpass_finds(monkeypatch, present):
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable in present:
        monkeypatch.setenv(variable, f"name-from-{variable.lower()}")
    assert login_name(os.environ) == getpass.getuser()


def test_an_empty_variable_is_passed_over_as_getpass_does(monkeypatch):
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LOGNAME", "")
    monkeypatch.setenv("USER", "someone")
    assert login_name(os.environ) == getpass.getuser() == "someone"


def test_it_reads_the_mapping_it_is_given_not_the_process_environment():
    assert login_name({"USER": "role"}) == "role"
    assert login_name({}) == pwd.getpwuid(os.getuid()).pw_name


def test_a_uid_without_a_password_entry_is_named_by_its_number(monkeypatch):
    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    assert login_name({}) == f"uid {os.getuid()}"
