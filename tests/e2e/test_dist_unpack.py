"""stoker.pyz's first unpack into the home (tools/zipapp_main.py), as another user races it:
the built zipapp run by a plain Python (`tests/e2e/test_dist.py`'s fixtures, its clean
directory and environment), with an audit hook standing in for that user's process."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.e2e.test_dist import app, dist, work  # noqa: F401  (its fixtures: the one built zipapp)
from tests.support.distapp import run_app
from tests.support.stoker_proc import REPO
from tests.support.users import open_sandbox, throwaway_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# As another user makes the missing HOME in a sticky directory just before shiv does, after
# the zipapp's check found it missing (an audit hook, the moment shiv's mkdir of it begins);
# with VICTIM, `.shiv` in it a symlink to that directory of root's.
MADE_MEANWHILE = """
import os, sys
HOME, made = os.environ["HOME"], []
def made_meanwhile(event, args):
    if event == "os.mkdir" and str(args[0]) == HOME and not made:
        made.append(HOME)  # (its own mkdir is an event too)
        os.mkdir(HOME)
        if VICTIM:
            os.symlink(VICTIM, os.path.join(HOME, ".shiv"))
            os.lchown(os.path.join(HOME, ".shiv"), 65534, 65534)
        os.chown(HOME, 65534, 65534)
sys.addaudithook(made_meanwhile)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a level of another user's needs root")
def test_a_home_another_user_made_after_the_check_gets_nothing_written_through_it(app):  # noqa: F811
    """Was: the check found HOME missing (to be made by this user), and shiv made `.shiv`,
    its lock file (opened O_TRUNC) and the whole unpacked tree through what the other user
    put there (here a symlink to a directory of root's) before the check again refused it.
    Now the levels made are checked before shiv writes anything there."""
    sticky, victim, hook = app["work"] / "sticky-unpack", app["work"] / "victim", app["work"] / "hook-unpack"
    sticky.mkdir(mode=0o1777)
    sticky.chmod(0o1777)
    victim.mkdir(mode=0o755)
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"VICTIM = {str(victim)!r}\n" + MADE_MEANWHILE)
    env = {k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}
    try:
        done = run_app(app, [app["python"], "stoker.pyz", "--version"],
                       env={**env, "HOME": str(sticky / "home"), "PYTHONPATH": str(hook)})
        assert (sticky / "home" / ".shiv").is_symlink()  # the hook planted it: the test can fail
        written = sorted(p.name for p in victim.iterdir())
    finally:
        for directory in (sticky, victim, hook):
            shutil.rmtree(directory, ignore_errors=True)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert written == []
    assert done.stderr == ("stoker: error: stoker.pyz will not run code unpacked where another user could change "
                           f"it ({sticky / 'home'}); set SHIV_ROOT to a directory of this user's\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="a user and a home of another user's need root")
def test_a_refused_home_given_with_a_trailing_slash_is_named_once(app):  # noqa: F811
    """Was: `(/home/u, /home/u)`: HOME=/home/u/ and the password database's /home/u, both
    refused, were told apart by their spelling."""
    env = {k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}
    with throwaway_user() as (user, group), open_sandbox() as shared:  # (the work directory is root's 0700)
        home = user.pw_dir
        os.mkdir(home, 0o755)
        try:
            os.chown(home, 65534, 65534)  # another user's: it is refused
            (shared / "stoker.pyz").write_bytes((app["dir"] / "stoker.pyz").read_bytes())
            for readable in (shared, shared / "stoker.pyz"):
                readable.chmod(0o755)
            done = run_app({**app, "dir": shared}, ["setpriv", f"--reuid={user.pw_uid}", f"--regid={group.gr_gid}",
                                                    "--clear-groups", app["python"], "stoker.pyz", "--version"],
                           env={**env, "HOME": f"{home}/"})
        finally:
            shutil.rmtree(home, ignore_errors=True)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == ("stoker: error: stoker.pyz will not run code unpacked where another user could change "
                           f"it ({home}); set SHIV_ROOT to a directory of this user's\n")



@pytest.mark.skipif(os.geteuid() != 0, reason="a level of another user's needs root")
def test_a_home_level_another_user_made_after_the_check_is_refused_before_its_code_runs(app):  # noqa: F811
    """Was: the check found HOME missing (to be made by this user) and the code shiv then
    unpacked into the other user's HOME was imported. Now checked again before it is used."""
    sticky = app["work"] / "sticky"
    sticky.mkdir(mode=0o1777)
    sticky.chmod(0o1777)
    (app["work"] / "hook").mkdir()
    (app["work"] / "hook" / "sitecustomize.py").write_text("VICTIM = ''\n" + MADE_MEANWHILE)
    env = {k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}
    try:
        done = run_app(app, [app["python"], "stoker.pyz", "--version"],
                       env={**env, "HOME": str(sticky / "home"), "PYTHONPATH": str(app["work"] / "hook")})
        assert (sticky / "home").stat().st_uid == 65534  # the hook made it: the test can fail
    finally:
        shutil.rmtree(sticky, ignore_errors=True)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == ("stoker: error: stoker.pyz will not run code unpacked where another user could change "
                           f"it ({sticky / 'home'}); set SHIV_ROOT to a directory of this user's\n")


def _readme_mb(pattern: str) -> float:
    found = re.search(pattern, (REPO / "README.md").read_text())
    assert found, pattern
    return float(found.group(1))


def test_the_readme_says_the_zipapps_size_and_its_unpacked_size_as_built(app):  # noqa: F811
    """README, "Running on Mesos": `dist/stoker.pyz (N MB)` and `it unpacks itself (about
    N MB, ...)`, within a fifth of the build's (it said 2.4 and 6 MB of a 3.4 MB zipapp
    that unpacks 8.7 MB)."""
    built = (app["dist"] / "stoker.pyz").stat().st_size / 1e6
    shiv = app["work"] / "shiv-sized"
    done = run_app(app, [app["python"], "stoker.pyz", "--version"], env={**app["env"], "SHIV_ROOT": str(shiv)})
    assert done.returncode == 0, done.stderr
    unpacked = sum(p.lstat().st_size for p in shiv.rglob("*") if p.is_file()) / 1e6
    shutil.rmtree(shiv, ignore_errors=True)
    said, said_unpacked = (_readme_mb(r"`dist/stoker\.pyz` \(([\d.]+) MB\)"),
                           _readme_mb(r"it unpacks itself \(about ([\d.]+) MB"))
    assert abs(said - built) <= built / 5, (said, built)
    assert abs(said_unpacked - unpacked) <= unpacked / 5, (said_unpacked, unpacked)
