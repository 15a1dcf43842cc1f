"""`stoker run`'s port picker (`executor/local/planning.py`'s `allocate_ports`) in the
corners its kernel's choice leads it to, each in a network namespace of its own whose local
port range is a few numbers (test_loopback_ports.py's `_picked`): a --port number the kernel
offers, a number another program has bound on ::1 without listening, every try used up; and
the descriptor limit it widens, and the picker not asked when nothing is to be chosen."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.test_loopback_ports import _picked, held_on_ipv6
from tests.support.stoker_proc import REPO, measured

pytestmark = pytest.mark.timeout(30)

GIVEN = """
import sys
from executor.local.planning import allocate_ports
try:
    print(allocate_ports(["a"], {"b": 40000}))
except OSError as exc:
    print("refused:", exc)
"""


def test_a_number_given_with_port_is_never_chosen_for_another_name():
    """The range is 40000 alone, given with --port to b: a, offered it, passes over it and
    has no other (was, with the loop left at the given number: a plan with no port for a)."""
    (line,) = _picked("echo '40000 40000' > /proc/sys/net/ipv4/ip_local_port_range && ", "", GIVEN)
    assert line == "refused: [Errno 98] Address already in use", line


BOUND = """
import socket, sys
from executor.local.planning import allocate_ports
other = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
other.bind(("::1", 40000))  # bound, not listening yet: a server on its way up
try:
    print(sorted(allocate_ports(["a", "b"], {}).values()))
except OSError as exc:
    print("refused:", exc)
"""


def test_a_number_another_program_has_bound_on_ipv6_loopback_is_not_free_even_with_reuse():
    """The picker's ::1 probe sets no SO_REUSEADDR: a number another program bound there
    with it (as servers do, before they listen) is not offered (with the probe's reuse, two
    such binds agree and 40000 was chosen beside 40001)."""
    (line,) = _picked("", "", BOUND)
    assert line == "refused: [Errno 98] Address already in use", line


EVERY_TRY = "from executor.local.planning import PICK_TRIES, allocate_ports\n" + held_on_ipv6(
    "range(40000, 40000 + PICK_TRIES)") + """
try:
    print(allocate_ports(["a"], {}))
except OSError as exc:
    print("refused:", exc)
"""


def test_a_name_whose_every_try_is_held_on_ipv6_loopback_is_refused_naming_the_tries():
    (line,) = _picked("echo '40000 40063' > /proc/sys/net/ipv4/ip_local_port_range && ", "", EVERY_TRY)
    assert line == "refused: no port free on both 127.0.0.1 and ::1 in 64 tries", line


WIDEST = """
import resource, sys
from executor.local import planning
NOFILE = resource.RLIMIT_NOFILE
resource.setrlimit(NOFILE, (64, resource.getrlimit(NOFILE)[1]))
seen = set()
probe = planning.loopback_sockets
def probed(*args, **kwargs):
    seen.add(resource.getrlimit(NOFILE)[0])
    return probe(*args, **kwargs)
planning.loopback_sockets = probed
ports = planning.allocate_ports([f"p{i}" for i in range(100)], {})
print(len(ports), sorted(seen), resource.getrlimit(NOFILE)[0])
"""


def test_the_picker_widens_the_soft_descriptor_limit_by_two_sockets_a_name_while_it_picks():
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1024:
        pytest.skip("a hard descriptor limit below 1,024 here")
    (line,) = _picked("echo '40000 40999' > /proc/sys/net/ipv4/ip_local_port_range && ", "", WIDEST)
    assert line == "100 [264] 64", line


def test_a_job_whose_every_port_is_given_asks_the_picker_for_none():
    """Most jobs choose no port: the picker (and its `socket`, loaded only there) is not asked."""
    script = ("from executor.local import planning\n"
              "asked = []\n"
              "planning._chosen = lambda names, given: asked.append(names) or {}\n"
              "print(planning.allocate_ports(['http'], {'http': 9000, 'admin': 9001}), asked)\n"
              "print(planning.allocate_ports(['http', 'admin'], {'http': 9000}), asked)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20, cwd=REPO,
                          env=measured({"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}))
    assert done.stdout.splitlines() == ["{'http': 9000, 'admin': 9001} []", "{'http': 9000} [['admin']]"], done.stderr
