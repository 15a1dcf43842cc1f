"""Stoker: a Mesos executor with an embedded health checker for Aurora/Thermos job specs."""
import os
import shutil
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

TOP_PACKAGES = ("executor", "healthcheck", "config")
BASE_VERSION = "0.1.0"  # executor.BASE_VERSION (a test checks)
HERE = os.path.dirname(os.path.abspath(__file__))


def git(*argv):
    """What git prints for `git -C HERE ARGV`, or None (no git, not a repository, an error)."""
    try:
        done = subprocess.run(["git", "-C", HERE, *argv], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def sdist_version():
    """The version an sdist was stamped with, from its PKG-INFO: a wheel built from an
    unpacked sdist (pip install stoker-*.tar.gz, python -m build) has no .git to ask."""
    try:
        with open(os.path.join(HERE, "PKG-INFO"), encoding="utf-8") as f:
            fields = [line.partition(":") for line in f]
    except OSError:
        return None
    return next((value.strip() for name, _, value in fields if name == "Version"), None)


def build_version():
    """The version a build stamps (PEP 440's local part names the commit): `0.1.0+g1a2b3c4`,
    `.dirty` after it when the checkout has changes; STOKER_BUILD_VERSION when set
    (tools/build_dist.py builds from a copy without .git, and passes the checkout's); an
    sdist's own; 0.1.0 without git (a `git archive` tree, no git installed). Only a
    repository whose top is this directory is asked: a tree unpacked inside another
    repository (a vendored tarball) would otherwise be stamped with that one's commit."""
    given = os.environ.get("STOKER_BUILD_VERSION") or sdist_version()
    if given:
        return given
    if git("rev-parse", "--show-prefix") != "" or not os.path.isdir(os.path.join(HERE, "executor")):
        return BASE_VERSION
    described = git("describe", "--always", "--abbrev=7", "--dirty=.dirty", "--match=no-tag-names-a-stoker-build")
    return f"{BASE_VERSION}+g{described}" if described else BASE_VERSION


VERSION = build_version()


class FreshBuildPy(build_py):
    """Copies the packages into an empty build/lib: setuptools keeps what an earlier build
    put there, so a module since deleted or moved would be installed again by the next
    `pip install .`."""

    def run(self):
        for package in TOP_PACKAGES:
            shutil.rmtree(os.path.join(self.build_lib, package), ignore_errors=True)
        super().run()
        # An editable install (make's venv) copies nothing into build_lib: it runs the checkout,
        # which has no stamp. Writing one there failed, and setuptools printed the traceback
        # with a warning that a later version will fail the install instead.
        if getattr(self, "editable_mode", False):
            return
        # The build's version, for `stoker --version` and the executor's first line
        # (executor.version(); a checkout without a build has none: 0.1.0).
        with open(os.path.join(self.build_lib, "executor", "_version.py"), "w", encoding="utf-8") as f:
            f.write(f'"""Written by setup.py at build time."""\nVERSION = {VERSION!r}\n')


setup(
    name="stoker",
    version=VERSION,
    description="Mesos executor with an embedded health checker for Aurora/Thermos-style jobs",
    python_requires=">=3.11",
    # package_dir: the packages sit at the top of the repository; saying so lets an editable
    # install be one .pth line (and spares `make run` setuptools' layout warning).
    package_dir={"": "."},
    packages=find_packages(include=["executor", "executor.*", "healthcheck", "healthcheck.*", "config", "config.*"]),
    install_requires=[
        # No HTTP client library: the agent connection, the HTTP health check and the
        # lifecycle endpoints use the standard library's http.client.
        "pystachio>=0.8.10",
        "attrs>=23.1",
        # ZooKeeper ServerSet announcements (--announcer-ensemble); imported only by a task
        # that announces
        "kazoo>=2.9",
        # `stoker observe`'s HTTP server (executor/observe/server.py says why this one);
        # imported only by that command
        "waitress>=3.0",
    ],
    package_data={"config.aurora": ["*.thrift"]},
    extras_require={
        # pytest 8.4: older ones put their own threading.excepthook in place during each test,
        # so a thread's crash never reached Stoker's handler (tests/unit/test_log_lines.py)
        "test": ["pytest>=8.4", "pytest-timeout>=2.2", "hypothesis>=6.90", "requests>=2.28",
                 # process trees in the tests' cleanup and the benchmarks' memory figures; Stoker
                 # itself reads /proc (executor/observe/usage.py), so nothing it installs is compiled
                 "psutil>=5.9",
                 # a second implementation of TBinaryProtocol: the tests write Aurora's
                 # AssignedTasks with it, and Stoker's own reader (config/aurora/wire.py) reads them
                 "thriftpy2>=0.7.1",
                 # the lint gate in `make test`; pinned so a new release cannot fail CI
                 "ruff==0.17.6", "mypy==2.4.1", "types-requests", "types-psutil",
                 # the observer's browser tests drive Debian's chromium (`make browser`)
                 "selenium>=4.20",
                 # a second reader of the observer's /metrics (Prometheus' own Python client's
                 # parser, tests/e2e/test_observe_metrics_prometheus.py): the tests' parser is
                 # ours; 0.4 gave samples their names and counters' families no _total
                 "prometheus_client>=0.4",
                 # `make test` runs the unit and integration tiers on three workers (docs/testing.md
                 # §13); 3.6.1: 3.6.0 was withdrawn (yanked)
                 "pytest-xdist>=3.6.1"],
        # `make coverage` (docs/testing.md §14): a dev tool, never a runtime dependency;
        # 7.10: `[run] patch = subprocess` measures the processes the tests start
        "coverage": ["coverage>=7.10"],
        "dist": ["shiv>=1.0.4,<2", "wheel>=0.38", "setuptools>=61"],
        # `make mutation` (docs/testing.md); pinned, since scores move with mutmut's operators
        "mutation": ["mutmut==3.8.1"],
        # `make fuzz` (docs/testing.md): coverage-guided fuzzing of the decoders, tests/fuzz/
        "fuzz": ["atheris==3.0.0"],
    },
    entry_points={"console_scripts": ["stoker = executor.cli.start:run"]},
    cmdclass={"build_py": FreshBuildPy},
)
