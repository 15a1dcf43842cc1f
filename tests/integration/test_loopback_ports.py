"""`stoker run`'s ports are free on both loopback addresses (`executor/local/planfiles.py`):
the health checks, TCP checks and lifecycle POSTs try ::1 when 127.0.0.1 refuses
(healthcheck/loopback.py), so a port another service listens on at [::1] only would get
the task's checks and /quitquitquit while the task is not listening yet. Before, the picker,
a kept plan's check and the restart's warning looked at 127.0.0.1 only."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from executor.local.attempts import ports_taken
from executor.local.planfiles import ports_free
from tests.support.shellwords import python_sh
from tests.support.stoker_proc import REPO, measured

pytestmark = pytest.mark.timeout(30)


def _ipv6_only_listener() -> socket.socket:
    """A listener on [::1]:P (IPV6_V6ONLY) whose P is free on 127.0.0.1."""
    for _ in range(20):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(("::1", 0))
            sock.listen()
        except OSError as exc:
            sock.close()
            pytest.skip(f"::1 cannot be bound here: {exc}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as v4:
            try:
                v4.bind(("127.0.0.1", sock.getsockname()[1]))
                return sock
            except OSError:
                sock.close()  # held on 127.0.0.1 too: another one
    pytest.skip("no port was free on 127.0.0.1 beside a [::1] one")


def test_a_port_another_service_holds_on_ipv6_loopback_only_is_neither_free_nor_kept():
    listener = _ipv6_only_listener()
    number = listener.getsockname()[1]
    try:
        assert not ports_free([number])
        assert ports_taken({"http": number, "health": number}) == [f"health={number}", f"http={number}"]
    finally:
        listener.close()
    assert ports_free([number]) and ports_taken({"http": number}) == []


PICK = """
import socket, sys
from executor.local.planfiles import ports_free
from executor.local.planning import allocate_ports
if sys.argv[1] == "held":
    other = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    other.bind(("::1", 40000))
    other.listen()
print(allocate_ports(["a"], {})["a"], ports_free([40000]), ports_free([40001]))
try:
    print(sorted(allocate_ports(["a", "b"], {}).values()))
except OSError as exc:
    print("refused:", exc)
"""


def _picked(setup: str, held: str, script: str = PICK) -> list[str]:
    """`script`'s lines, in a network namespace of its own whose local ports are 40000-40001 only."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("no unshare or ip here")
    script = (f"ip link set lo up && echo '40000 40001' > /proc/sys/net/ipv4/ip_local_port_range && {setup}"
              f"exec {python_sh('-c', script)} {held}")
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=20,
                          cwd=REPO, env=measured({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO)}))
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"no network namespace of its own here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_picker_passes_over_a_port_another_service_holds_on_ipv6_loopback():
    """Of the two ports the kernel may offer, 40000 is held on [::1]: the picker takes 40001
    whichever it is offered first, and has no second port to give (before: 40000 and 40001)."""
    first, both = _picked("", "held")
    assert first == "40001 False True"
    assert both == "refused: [Errno 98] Address already in use", both  # the kernel has none left


def test_without_ipv6_on_loopback_127_0_0_1_alone_decides():
    first, both = _picked("echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 && ", "none")
    assert first.split()[1:] == ["True", "True"] and both == "[40000, 40001]", (first, both)


def held_on_ipv6(numbers: str) -> str:
    """A script's lines that listen on [::1] (only) on each of `numbers` (a Python expression)."""
    return f"""
import socket
held = []
for number in {numbers}:
    other = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    other.bind(("::1", number))
    other.listen()
    held.append(other)
"""


PLAN = held_on_ipv6("(40000, 40001)") + """
import sys
from config.errors import ConfigError
from config.plan import plan_job
from executor.local.planning import allocate_ports
try:
    plan_job(sys.argv[1], None, (), instance=0, fixed_ports={}, hostname="h", user="u", allocate=allocate_ports)
except ConfigError as exc:
    print("refused:", exc)
"""


def test_a_run_that_can_have_no_free_port_is_refused_with_a_reason_not_a_crash(tmp_path):
    """Every local port held on ::1 (or in use on 127.0.0.1): the planning child's OSError
    was `stoker run`'s crash, a traceback of the planning process under a CRITICAL line."""
    config = tmp_path / "px.aurora"
    config.write_text("jobs = [Job(cluster='local', role='me', environment='test', name='px', task=Task(\n"
                      "    processes=[Process(name='a', cmdline='echo {{thermos.ports[http]}}')],\n"
                      "    resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    (line,) = _picked("", str(config), PLAN)
    assert line == (f"refused: '{config}': job local/me/test/px: no free loopback port could be chosen "
                    "for http: Address already in use"), line


@pytest.mark.parametrize("denied", ["EPERM", "EACCES"])
def test_a_process_denied_ipv6_sockets_has_its_ports_on_127_0_0_1_alone(denied):
    """A seccomp profile (EPERM) or AppArmor's `deny network inet6` (EACCES) on IPv6 sockets:
    Stoker's checks cannot reach ::1 then either, so 127.0.0.1 decides, as before ::1 was
    looked at; before, every number the kernel offered was passed over and `stoker run`
    had no port to give any job."""
    from tests.support import seccomp

    seccomp.require()
    script = ("from executor.local.planfiles import ports_free\n"
              "from executor.local.planning import allocate_ports\n"
              "number = allocate_ports(['a'], {})['a']\n"
              "print(ports_free([number]))\n")
    done = subprocess.run([*seccomp.launcher([f"socket:10={denied}"]), sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=20, cwd=REPO, env=measured({"PYTHONPATH": str(REPO)}))
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr


MANY = """
import resource, sys
from executor.local.planfiles import ports_free
from executor.local.planning import allocate_ports
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
count = int(sys.argv[1])
kept = ports_free(list(range(40000, 40000 + count)))
ports = allocate_ports([f"p{i}" for i in range(count)], {})
print(kept, len(set(ports.values())), ports_free(sorted(ports.values())), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_hundreds_of_ports_are_chosen_and_checked_past_the_soft_descriptor_limit():
    """The picker holds a port's two sockets until every port is chosen, and a kept plan's
    check holds them until the last is checked: 100 ports under a soft limit of 64 (a job of
    500 under the usual 1,024) failed with EMFILE, 'no free loopback port could be chosen
    for ...: Too many open files', and a kept plan's ports were said to be taken. The soft
    limit is raised for them within the hard one, then put back."""
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1024:
        pytest.skip("a hard descriptor limit below 1,024 here")
    (line,) = _picked("echo '40000 40999' > /proc/sys/net/ipv4/ip_local_port_range && ", "100", MANY)
    assert line == "True 100 True 64", line


WIDENED = """
import json, resource
from executor.local.planfiles import _narrowed, _widened
NOFILE = resource.RLIMIT_NOFILE
hard = resource.getrlimit(NOFILE)[1]
seen = []
def step(count, soft, cap):
    resource.setrlimit(NOFILE, (soft, cap))
    was = _widened(count)
    raised = resource.getrlimit(NOFILE)
    _narrowed(was)
    seen.append([was, list(raised), list(resource.getrlimit(NOFILE))])
step(64, 100, hard)  # few sockets: the limit not looked at
step(65, 100, hard)  # raised by the count, then put back
step(65, 100, 150)  # within the hard limit
step(65, 150, 150)  # at the hard limit already: left as it is
print(json.dumps(seen))
"""


def test_the_soft_descriptor_limit_is_raised_by_the_sockets_held_within_the_hard_one_then_put_back():
    """In a child: the hard limit, once lowered, cannot be raised again but by root."""
    import json
    import os
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < 1024:
        pytest.skip("a hard descriptor limit below 1,024 here")
    done = subprocess.run([sys.executable, "-c", WIDENED], capture_output=True, text=True, timeout=20, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (
                              str(REPO), os.environ.get("PYTHONPATH"))))))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        [None, [100, hard], [100, hard]],
        [100, [165, hard], [100, hard]],
        [100, [150, 150], [100, 150]],
        [None, [150, 150], [150, 150]],
    ]
