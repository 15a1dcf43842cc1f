"""A wall clock that a test steps, for one process tree, without touching the host's clock.

`WallClock(tmp_dir)` compiles (gcc) a small LD_PRELOAD library into `tmp_dir` whose
`clock_gettime` adds an offset to CLOCK_REALTIME (and CLOCK_REALTIME_COARSE), as its
`gettimeofday` and `time` do; the offset is read, at every call, from a file the test writes
(`step(secs)`: the clock, as the processes started with `env()` read it, jumps by `secs`,
forward or back, as NTP stepping it would). CLOCK_MONOTONIC and CLOCK_BOOTTIME are left
alone, as a step leaves them. A file's times are the kernel's, not stepped: a file made before
a step looks, to the stepped processes, as one made before a real step would.
"""
from __future__ import annotations

import os
from pathlib import Path

from tests.support import preload

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_ns(void) {
    const char *path = getenv("STOKER_TEST_WALL_OFFSET_FILE");
    char buf[64];
    if (!path) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return (long long)(strtod(buf, NULL) * 1e9);
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(clk, ts);
    if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) {
        long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + offset_ns();
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


class WallClock:
    """The stepped wall clock of the processes started with `env()`; starts unstepped."""

    def __init__(self, tmp_dir: Path) -> None:
        self.library = preload.build(tmp_dir, "wallclock", SOURCE, "wall-clock")
        self.offset_file = tmp_dir / "wall-offset"
        self.step_to(0.0)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (else this process's environment) with the library preloaded."""
        env = preload.preloaded(os.environ if base is None else base, self.library)
        env["STOKER_TEST_WALL_OFFSET_FILE"] = str(self.offset_file)
        return env

    def step_to(self, offset_secs: float) -> None:
        """From now on the stepped clock reads the real one plus `offset_secs` (written whole:
        a reader sees the old offset or the new one)."""
        part = self.offset_file.with_suffix(".part")
        part.write_text(f"{offset_secs!r}\n")
        os.replace(part, self.offset_file)
