"""What reading the registry again costs (`stoker observe` reads it on every request): an
entry whose file did not change is not opened or parsed again (`executor/host/entrycache.py`),
one that changed is (replaced whole, or rewritten in place with its size and mtime put
back), one that is gone is forgotten; a supervisor is looked at once a reading
(`identity.one_reading`), and the boot's id is read once a process."""
from __future__ import annotations

import pytest

from executor.host import identity
from tests.support.opens import opens

pytestmark = pytest.mark.timeout(30)
ME = identity.own_identity()


def test_the_boots_id_is_read_once_a_process():
    identity.boot_id()
    with opens() as opened:
        for _ in range(3):
            assert identity.own_identity().boot_id == ME.boot_id
            assert identity.is_alive(ME.pid, ME.start_ticks, ME.boot_id)
    assert opened["boot_id"] == 0  # before: once each look at a live process
