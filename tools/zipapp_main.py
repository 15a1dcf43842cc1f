# -*- coding: utf-8 -*-
"""Stoker's zipapp entry point: tools/build_dist.py puts this file in place of shiv's own
`__main__.py` in dist/stoker.pyz.

Owns three decisions taken before shiv unpacks the bundled dependencies:
- a Python older than 3.11 is refused with one clear line and exit status 2;
- a directory it cannot unpack into (a service user's HOME that does not exist or is not
  its own, a SHIV_ROOT on a read-only mount) is one clear line naming it and exit status 2,
  not shiv's traceback; it never falls back to somewhere else (a shared /tmp directory
  could hold code someone else put there);
- where shiv unpacks when SHIV_ROOT is not set: under Mesos the executor's HOME may be
  missing or not writable, so the bundle goes to $MESOS_SANDBOX/.shiv (else
  $MESOS_DIRECTORY/.shiv), which is always writable and is removed with the sandbox;
  elsewhere shiv's own default, ~/.shiv, ~ being $HOME only when no other user could change
  what it unpacks there, else the password database's home (`_home_cache_path`: `sudo`
  that keeps the caller's HOME), else (or with no home at all) one clear line and exit status 2. Except as root under Mesos: a root executor
  hands the sandbox to the task's role, and code it imports later must not come from a
  directory the role owns, so it unpacks into ROOT_CACHE (root-owned, mode 0700, checked
  before use), and into the sandbox only when that cannot be had.
The home's levels are checked again once made, before shiv writes there, and its
`site-packages` again just before it goes on sys.path (`_Site`); and
a Ctrl-C as it loads exits 130 without a traceback, as `stoker` does.
It must never set SHIV_ROOT (or anything else) in the environment, so the task's processes
inherit nothing from the packaging. It runs on any Python 3 far enough to print the version
error, so it uses no syntax newer than 3.5.
"""
import os
import sys


def _interrupted_quietly(kind, value, traceback, found=sys.excepthook):
    """A Ctrl-C as stoker.pyz loads (shiv unpacking, Stoker's modules importing; argv[0] is
    not `stoker`, so executor/__init__.py's hook is not set): exit 130 without a traceback,
    as `stoker` does. Anything else goes to the hook found."""
    if not issubclass(kind, KeyboardInterrupt):
        return found(kind, value, traceback)
    os._exit(130)


_interrupted_quietly.stoker_quiet = True  # executor.QUIET: once the log is configured, its hook takes a Ctrl-C

if not os.environ.get("SHIV_INTERPRETER"):  # (a Python prompt or `-c` keeps Python's handling)
    sys.excepthook = _interrupted_quietly

if sys.version_info < (3, 11):
    sys.stderr.write(
        "stoker: error: stoker.pyz needs Python 3.11 or newer, but %s is Python %d.%d.%d; "
        "run it with a newer interpreter, e.g. `python3.11 stoker.pyz ...`\n"
        % ((sys.executable or "python3",) + tuple(sys.version_info[:3]))
    )
    sys.exit(2)


def _forget_relative_pythonpath():
    """PYTHONPATH's directories relative to the working directory (an empty entry, `.`,
    `lib`) off sys.path before shiv's bootstrap imports `zipfile`, `shutil`, `hashlib`...:
    under Mesos that directory is the sandbox, and a file the job fetched there was imported,
    as root, before Stoker's own first line (`executor.forget_relative_pythonpath`, whose
    twin this is: that package is not unpacked yet) took the entry off. A directory searched
    anyway stays: one given absolutely too, the standard library's, site's."""
    given = "" if sys.flags.ignore_environment else os.environ.get("PYTHONPATH", "")
    entries = given.split(os.pathsep) if given else []
    relative = set(os.path.abspath(entry) for entry in entries if not os.path.isabs(entry))
    if not relative:
        return
    stdlib = os.path.dirname(os.__file__)
    kept = set(os.path.normpath(entry) for entry in entries if os.path.isabs(entry))
    kept.update((stdlib, os.path.join(stdlib, "lib-dynload")))
    site = sys.modules.get("site")  # not with -S
    if site is not None:
        kept.update(site.getsitepackages())
        if site.ENABLE_USER_SITE:
            kept.add(site.getusersitepackages())
    sys.path[:] = [entry for entry in sys.path if entry not in relative - kept]


_forget_relative_pythonpath()

import _bootstrap  # noqa: E402  (after the Ctrl-C hook, the version check and the working directory's removal from sys.path)

_shiv_cache_path = _bootstrap.cache_path


ROOT_CACHE = "/var/cache/stoker/shiv"


def _root_cache():
    """ROOT_CACHE, made if missing; None unless it is a root-owned directory no one else
    can write (a planted symlink or a loose mode is refused)."""
    try:
        os.makedirs(ROOT_CACHE, mode=0o700, exist_ok=True)
        st = os.lstat(ROOT_CACHE)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        return None
    return ROOT_CACHE


def _sandbox_root():
    sandbox = os.environ.get("MESOS_SANDBOX") or os.environ.get("MESOS_DIRECTORY")
    if not sandbox:
        return None
    if os.geteuid() == 0:
        cache = _root_cache()
        if cache is not None:
            return cache
    return os.path.join(sandbox, ".shiv")


def _cache_path(archive, root_dir, build_id):
    # root_dir is SHIV_ROOT when set (shiv reads it), used as given, as PYTHONPATH would be;
    # only its absence changes here
    if root_dir:
        return _shiv_cache_path(archive, root_dir, build_id)
    sandbox = _sandbox_root()
    if sandbox is not None:
        return _shiv_cache_path(archive, sandbox, build_id)
    return _home_cache_path(archive, build_id)


def _home_cache_path(archive, build_id):
    """shiv's ~/.shiv, ~ being $HOME, else the password database's home: the first where no
    other user could change what its site-packages holds (`_foreign`). `sudo` that keeps the
    caller's HOME made root import the code the caller put in their ~/.shiv (shiv uses a
    site-packages it finds there as it is)."""
    homes = [os.environ.get("HOME", "")]
    try:
        import pwd

        homes.append(pwd.getpwuid(os.geteuid()).pw_dir)
    except (ImportError, KeyError):  # a uid with no entry (a container's arbitrary uid)
        homes.append("")
    homes = [os.path.normpath(home) if os.path.isabs(home) else home for home in homes]  # HOME=/root/: once
    refused = []
    for home in homes:
        if not os.path.isabs(home) or (home == homes[0] and refused):
            continue
        path = _shiv_cache_path(archive, os.path.join(home, ".shiv"), build_id)
        level = _foreign(os.path.join(str(path), "site-packages"))
        if not level:
            _home_site.append(os.path.join(str(path), "site-packages"))  # checked again (`_Site`)
            return path
        refused.append(level)
    if not refused:  # no home at all (a container's arbitrary uid): was shiv's traceback
        given = os.environ.get("HOME")
        sys.stderr.write(
            "stoker: error: stoker.pyz has no home to unpack into (%s, uid %d has no home in the password "
            "database); set SHIV_ROOT to a directory of this user's\n"
            % ("HOME (%s) is not an absolute path" % given if given else "HOME is not set", os.geteuid())
        )
        sys.exit(2)
    _refuse(refused)


def _refuse(levels):
    sys.stderr.write(
        "stoker: error: stoker.pyz will not run code unpacked where another user could change it "
        "(%s); set SHIV_ROOT to a directory of this user's\n" % ", ".join(levels)
    )
    sys.exit(2)


def _foreign(path):
    """The first level of `path` that exists and that a user other than this one and root
    owns (a symlink on the way too), or, where it leads, may write (a sticky directory such as
    /tmp aside, and the user's own group); '' when none: they could put code there, or
    rename ours away and put theirs in its place."""
    import stat

    euid, egid = os.geteuid(), os.getegid()
    for candidate, walked in ((path, True), (os.path.realpath(path), False)):
        level = "/"
        for part in candidate.split("/"):
            if not part:
                continue
            level = os.path.join(level, part)
            try:
                st = os.lstat(level)
            except OSError:  # missing: made by this user
                break
            if st.st_uid not in (euid, 0):
                return level
            if walked or st.st_mode & stat.S_ISVTX:
                continue
            if st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != egid):
                return level
    return ""


def _extract_site_packages(archive, target_path, *args, **kwargs):
    # what it makes no other user's to write, whatever the umask: under a umask of 0 it made
    # ~/.shiv and each level below 0777, imported what another user could have put there,
    # and a next start refused it (`_foreign`); the user's own is back for the task
    umask = os.umask(0o022)
    os.umask(umask | 0o022)
    try:
        if _home_site:  # the home's levels made (what was missing at the check), and checked
            os.makedirs(str(target_path.parent), exist_ok=True)  # again before shiv writes there
            level = _foreign(str(target_path.parent))  # (its lock file, O_TRUNC, and the tree)
            if level:
                _refuse([level])
        _shiv_extract(archive, target_path, *args, **kwargs)
    except OSError as exc:
        sys.stderr.write(
            "stoker: error: stoker.pyz cannot unpack itself into %s: %s; set SHIV_ROOT to a "
            "directory this user can write\n" % (target_path.parent, exc)
        )
        sys.exit(2)
    finally:
        os.umask(umask)


class _Site:
    """`site` as shiv's bootstrap sees it: the home's site-packages is checked again
    (`_foreign`) just before `addsitedir` puts it on sys.path, after the unpack (or in place of
    it, when it is there already): a level missing at the first check, in a sticky directory
    (root with HOME=/tmp/x), may have been made since by another user."""

    def __getattr__(self, name):
        return getattr(_real_site, name)

    def addsitedir(self, sitedir, known_paths=None):
        level = _foreign(_home_site[-1]) if _home_site else ""
        if level:
            _refuse([level])
        return _real_site.addsitedir(sitedir, known_paths)


_home_site = []  # the home's site-packages `_home_cache_path` chose, once checked
_real_site = _bootstrap.site
_shiv_extract = _bootstrap.extract_site_packages
_bootstrap.site = _Site()
_bootstrap.cache_path = _cache_path
_bootstrap.extract_site_packages = _extract_site_packages
_bootstrap.bootstrap()
