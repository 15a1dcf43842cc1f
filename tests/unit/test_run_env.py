"""`executor/procs/runenv.py`: the markers and the env every run starts from, `BASH_ENV` for
`.thermos_profile` written as bash reads it and read back, a filesystem image's view of it,
and a command line for exec under a file system encoding that cannot hold it."""
from __future__ import annotations

import subprocess

import pytest

from executor.procs import runenv


def test_the_env_every_run_starts_from():
    given = {"PATH": "/bin", "BAD\0KEY": "x", "NUL": "a\0b", "A=B": "c", runenv.RUN_MARKER: "parent's"}
    assert runenv.task_env(given, "/sb", "m1") == {"PATH": "/bin", "HOME": "/sb", runenv.TASK_MARKER: "m1"}
    assert runenv.task_env({"HOME": "/home/u"}, "/sb", "m1")["HOME"] == "/home/u"
    assert given[runenv.RUN_MARKER] == "parent's"  # the caller's mapping is left as it was


def test_a_run_s_env_adds_its_marker_and_the_profile_when_given():
    base = {"PATH": "/bin", runenv.TASK_MARKER: "m1"}
    assert runenv.run_env(base, "m1", "web", 3) == {**base, runenv.RUN_MARKER: "m1/web/3"}
    assert runenv.run_env(base, "m1", "web", 3, "/sb/.thermos_profile") == {
        **base, runenv.RUN_MARKER: "m1/web/3", "BASH_ENV": "/sb/.thermos_profile"}
    assert runenv.run_marker("m1", "web", 0) == "m1/web/0" and base == {"PATH": "/bin", runenv.TASK_MARKER: "m1"}


def test_the_profile_is_named_only_while_it_exists(tmp_path, monkeypatch):
    sandbox = tmp_path / "sb$x"
    sandbox.mkdir()
    profile = runenv.profile_path(sandbox)
    assert profile == f"{sandbox}/.thermos_profile"
    monkeypatch.chdir(tmp_path)
    assert runenv.profile_path("sb$x") == profile  # made absolute
    assert runenv.profile_now(profile) is None and runenv.with_profile({"A": "1"}, sandbox) == {"A": "1"}
    (sandbox / ".thermos_profile").write_text("export X=1\n")
    assert runenv.profile_now(profile) == f"{tmp_path}/sb\\$x/.thermos_profile"
    assert runenv.with_profile({"A": "1"}, sandbox) == {"A": "1", "BASH_ENV": f"{tmp_path}/sb\\$x/.thermos_profile"}


@pytest.mark.parametrize(("path", "value"), [
    ("/sb/p", "/sb/p"),
    ("/sb$HOME/p", "/sb\\$HOME/p"),
    ("/sb`id`/p", "/sb\\`id\\`/p"),
    ("/sb\\n/p", "/sb\\\\n/p"),
    ("/sb\x01x/p", "/sb\x01\x01x/p"),
    ("/sb\"'/p", "/sb\"'/p"),
])
def test_bash_env_is_written_as_bash_expands_it_and_read_back(path, value):
    assert runenv.bash_env(path) == value
    assert runenv.bash_env_path(value) == path


def test_a_bash_env_value_written_by_hand_is_read_as_bash_reads_it():
    assert runenv.bash_env_path("/a\\b") == "/a\\b"  # a backslash before another character stays
    assert runenv.bash_env_path("/a\\") == "/a\\"
    assert runenv.bash_env_path("/a\x01") == "/a"  # CTLESC at the end: taken away


@pytest.mark.parametrize("path", ["/sb$HOME/p", "/sb`id`/p", "/sb\\n/p", "/sb\x01x/p"])
def test_bash_reads_the_profile_at_the_path_written(tmp_path, path):
    profile = tmp_path / path.lstrip("/").replace("/", "_")
    profile.write_text("echo sourced\n")
    ran = subprocess.run(["/bin/bash", "-c", "true"], env={"BASH_ENV": runenv.bash_env(str(profile)), "PATH": "/bin"},
                         capture_output=True, text=True, timeout=10)
    assert ran.stdout == "sourced\n", ran.stderr


def test_an_image_s_view_of_the_profile_is_written_for_bash_again():
    def into_image(env):
        return {k: v.replace("/host/sb", "/mnt/mesos/sandbox") for k, v in env.items()}

    written = runenv.bash_env("/host/sb$1/.thermos_profile")
    seen = runenv.seen_through({"BASH_ENV": written, "HOME": "/host/sb$1"}, into_image)
    assert seen == {"BASH_ENV": "/mnt/mesos/sandbox\\$1/.thermos_profile", "HOME": "/mnt/mesos/sandbox$1"}
    own = runenv.seen_through({"BASH_ENV": "$HOME/.rc"}, into_image)  # not the sandbox's: as given
    assert own == {"BASH_ENV": "$HOME/.rc"}
    assert runenv.seen_through({"HOME": "/host/sb"}, into_image) == {"HOME": "/mnt/mesos/sandbox"}


def test_a_command_line_goes_to_exec_as_the_file_system_encoding_holds_it(monkeypatch):
    assert runenv.exec_text("echo café") == "echo café"  # UTF-8 here: as it is
    monkeypatch.setattr(runenv, "_FS_UTF8", False)
    monkeypatch.setattr(runenv.os, "fsencode", lambda text: text.encode("ascii", "surrogateescape"))
    assert runenv.exec_text("echo cafe") == b"echo cafe"
    assert runenv.exec_text("echo café") == "echo café".encode()
    assert runenv.exec_text("echo \udcff") == b"echo \xff"  # a byte it came as goes back as that byte
    assert runenv.exec_text("café \udcff") == b"caf\xc3\xa9 \xff"  # as UTF-8, that byte too
