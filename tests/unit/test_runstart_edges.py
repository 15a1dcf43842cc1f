"""`stoker run`'s start at its edges: what a sandbox that cannot be made says, a refused
port claim letting go of its own numbers only, and a plan cache that cannot be used."""
from __future__ import annotations

import errno
import logging
import os

import pytest

from config.words import quoted
from executor.host.entry import claims_name
from executor.host.identity import boot_id, host_identity
from executor.host.lock import byte_lock_holder
from executor.local.runstart import PortClaims, _unmade
from tests.unit.test_runstart import announcing, claims, plan_of  # noqa: F401 (claims: the fixture)

pytestmark = pytest.mark.timeout(60)


def test_a_symbolic_link_the_sandbox_cannot_be_made_through_for_another_reason_says_that_reason(tmp_path):
    """Only "File exists" at a link is the link's story; another error there is said as it is."""
    link = tmp_path / "sandbox"
    link.symlink_to(tmp_path / "gone")
    assert _unmade(link, PermissionError(errno.EACCES, "Permission denied")) == "Permission denied"
    assert _unmade(link, FileExistsError(errno.EEXIST, "File exists")) == \
        f"it is a symbolic link to {quoted(str(tmp_path / 'gone'))}, which does not exist"


def test_an_error_with_no_words_of_the_system_is_said_as_it_was_raised(tmp_path):
    assert _unmade(tmp_path / "sandbox", OSError("the disk went away")) == "the disk went away"


def test_a_refused_claim_lets_go_of_the_numbers_it_took_and_of_no_other(claims):  # noqa: F811
    """Each number it took is let go one byte each: a port this run claimed before, beside
    one of them, stays claimed."""
    settings, claimed_by_another = claims
    claimed_by_another(40062)
    mine = PortClaims(settings)
    assert mine.take([40061])
    assert not mine.take([40060, 40062]) and mine.contested == 40062
    path = os.stat(os.path.join(settings.registry_root, claims_name(boot_id(), host_identity())))
    assert byte_lock_holder(path, 40061) == os.getpid()  # claimed before: kept
    assert byte_lock_holder(path, 40060) != os.getpid()  # taken by the refused claim: let go


def test_a_plan_cache_that_is_a_file_is_said_in_one_line_naming_it(tmp_path, caplog):
    config, cache = announcing(tmp_path, ""), tmp_path / "plans"
    cache.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        plan_of(config, {"STOKER_PLAN_CACHE": str(cache)})
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("plan_not_kept ") and f"{cache} is a regular file, not a directory (ENOTDIR)" in line
    assert "each run plans the job again" in line


def test_a_finder_another_thread_dropped_meanwhile_is_passed_over(monkeypatch, tmp_path):
    """The finders are listed in one step; one another thread's import dropped between that
    step and its own drop is gone already, and the rest are dropped all the same."""
    from importlib.machinery import FileFinder

    from executor.local.runstart import forget_listings

    first, second = str(tmp_path / "a"), str(tmp_path / "b")

    class DroppedMeanwhile(dict):
        def items(self):
            listed = list(super().items())
            del self[first]  # as another thread would, right after the listing
            return listed

    cache = DroppedMeanwhile({first: FileFinder(first), second: FileFinder(second)})
    monkeypatch.setattr("sys.path_importer_cache", cache)
    forget_listings(("no_such_package",))
    assert cache == {}
