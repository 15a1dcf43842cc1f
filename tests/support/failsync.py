"""fsync and fdatasync that fail with EIO, for one process tree, while the test says so.

`FailingSync(tmp_dir, path_suffix, after)` builds (gcc, `tests/support/preload.py`) an
LD_PRELOAD library; in the processes started with `env()`, a sync of a descriptor whose path
(`/proc/self/fd/N`'s link) ends with `path_suffix` fails with EIO, as a disk's write error
fails one, while the fault holds (`fail()`, until `recover()`), once the first `after` such
syncs of the process (those that work, counted while the fault holds) are past. The real
call is not made for a failed one: what it would have written stays unwritten. Each failure
is written down (the path, a line) in the fault's file; `recover()` gives them back.
"""
from __future__ import annotations

import os
from pathlib import Path

from tests.support import preload

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed;  /* the process's matching syncs let through while the fault held */

/* Whether the sync of `fd` is to fail: its path ends with STOKER_TEST_FAILSYNC_PATH, the file
   STOKER_TEST_FAILSYNC_WHILE exists (the failure is appended to it) and the first
   STOKER_TEST_FAILSYNC_AFTER such syncs are past. */
static int failing(int fd) {
    const char *flag = getenv("STOKER_TEST_FAILSYNC_WHILE");
    const char *suffix = getenv("STOKER_TEST_FAILSYNC_PATH");
    const char *after = getenv("STOKER_TEST_FAILSYNC_AFTER");
    char link[64], path[4096];
    if (!flag || !suffix) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    size_t len = strlen(suffix);
    if (n < 0 || (size_t)n < len) return 0;
    path[n] = 0;
    if (strcmp(path + n - len, suffix) != 0) return 0;
    int out = open(flag, O_WRONLY | O_APPEND | O_CLOEXEC);  /* never made here: gone, the fault is over */
    if (out < 0) return 0;
    if (after && __atomic_fetch_add(&passed, 1, __ATOMIC_SEQ_CST) < atoi(after)) {
        close(out);
        return 0;
    }
    path[n] = '\n';
    ssize_t wrote = write(out, path, n + 1);
    (void)wrote;
    close(out);
    return 1;
}

static int synced(const char *name, int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    int saved = errno;
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    errno = saved;
    return real(fd);
}

int fsync(int fd) { return synced("fsync", fd); }
int fdatasync(int fd) { return synced("fdatasync", fd); }
"""


class FailingSync:
    """The failing syncs of the processes started with `env()`; none fails before `fail()`."""

    def __init__(self, tmp_dir: Path, path_suffix: str, after: int = 0) -> None:
        self.library = preload.build(tmp_dir, "failsync", SOURCE)
        self._flag = tmp_dir / "failsync.failing"
        self._suffix, self._after = path_suffix, after

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (else this process's environment) with the library preloaded."""
        env = preload.preloaded(os.environ if base is None else base, self.library)
        env.update(STOKER_TEST_FAILSYNC_WHILE=str(self._flag), STOKER_TEST_FAILSYNC_PATH=self._suffix,
                   STOKER_TEST_FAILSYNC_AFTER=str(self._after))
        return env

    def fail(self) -> None:
        """From now on the syncs fail."""
        self._flag.touch()

    def failed(self) -> list[str]:
        """The paths of the syncs failed so far, in order (one per failure)."""
        try:
            return self._flag.read_text().splitlines()
        except FileNotFoundError:
            return []

    def recover(self) -> list[str]:
        """From now on the syncs work (the device is back): the paths of those that failed.
        The file is renamed away first, so that a failure under way is still counted."""
        over = self._flag.with_suffix(".over")
        os.replace(self._flag, over)
        return over.read_text().splitlines()
