"""The install steps in the comments of examples/{systemd,runit,s6,supervisord} work as
written, run from the example's own directory: each file they copy exists there (or is
`make dist`'s), and each directory they copy into is one the service manager has, or one an
earlier step makes (`cp hello_world.aurora /etc/stoker/hello.aurora` failed on both counts:
the job is in examples/, and nothing made /etc/stoker)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = ["systemd/stoker-run@.service", "systemd/stoker-observe.service", "runit/stoker-hello/run",
         "s6/stoker-hello/run", "supervisord/stoker-hello.conf"]
# The directories the service managers (or the system) have: only /etc/stoker is Stoker's.
THERE = {"/etc/systemd/system", "/etc/sv", "/run/service", "/etc/supervisor/conf.d", "/usr/local/bin"}
BUILT = "dist/stoker.pyz"  # `make dist`'s


def _steps(path: Path) -> list[list[str]]:
    """The commands of the comment's indented install lines (`#   cp ...`), split at `&&`."""
    steps = []
    for line in path.read_text().splitlines():
        match = re.match(r"[#;] {3}(\S.*)", line)
        if match:
            text = re.split(r"\s[#;]\s", match.group(1))[0]  # a trailing remark
            steps += [shlex.split(part) for part in text.split("&&")]
    return steps


@pytest.mark.parametrize("name", FILES)
def test_each_install_step_copies_a_file_that_is_there_into_a_directory_that_is(name):
    path = EXAMPLES / name
    here = path.parent.parent if path.parent.name == "stoker-hello" else path.parent
    made, copied = set(THERE), 0
    for argv in _steps(path):
        if argv[:2] == ["mkdir", "-p"]:
            made |= set(argv[2:])
        elif argv[0] in ("cp", "install"):
            *sources, dest = [a for a in argv[1:] if not a.startswith("-") and not a.isdigit()]
            for source in sources:
                assert source.endswith(BUILT) or (here / source).exists(), f"{name}: {' '.join(argv)}"
            target = dest.rstrip("/") if dest.endswith("/") else str(Path(dest).parent)
            assert target in made, f"{name}: {' '.join(argv)}: nothing makes {target}"
            copied += 1
    assert copied >= 2, f"{name}: no install steps found"
