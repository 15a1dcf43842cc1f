/* The launch bench's C floor (bench/bench_launch.py): what a supervisor written in C pays to
 * start N processes on this machine. posix_spawns N `/bin/bash -c CMD`, each in its own
 * session, prints one line, then waits for its stdin to close, kills its children with
 * SIGKILL and reaps them. Built by the bench with the machine's `cc -O2`.
 *
 * Given LOGDIR, each run also gets what the sandbox layout asks of any supervisor before its
 * spawn: a directory LOGDIR/pI/0 (two mkdirs) and its stdout and stderr files (created
 * O_EXCL), which the run writes to; the floor for a supervisor that keeps Thermos' logs.
 *
 *     floor_spawner N CMD [LOGDIR]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* LOGDIR/pI/0/{stdout,stderr}, made and opened; -1 (and errno) when one cannot be. */
static int open_logs(const char *logdir, int i, int fds[2]) {
    char path[4096];
    snprintf(path, sizeof path, "%s/p%d", logdir, i);
    if (mkdir(path, 0755) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/p%d/0", logdir, i);
    if (mkdir(path, 0755) != 0)
        return -1;
    const char *names[2] = {"stdout", "stderr"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/p%d/0/%s", logdir, i, names[k]);
        fds[k] = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fds[k] < 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s N CMD [LOGDIR]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]);
    const char *logdir = argc == 4 ? argv[3] : NULL;
    pid_t *pids = calloc(n > 0 ? n : 1, sizeof(pid_t));
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    char *args[] = {"/bin/bash", "-c", argv[2], NULL};
    int spawned = 0, status = 0;
    for (; spawned < n; spawned++) {
        int fds[2] = {-1, -1};
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        if (logdir != NULL) {
            if (open_logs(logdir, spawned, fds) != 0) {
                perror("log directory or file");
                for (int k = 0; k < 2; k++)
                    if (fds[k] >= 0)
                        close(fds[k]);
                posix_spawn_file_actions_destroy(&actions);
                status = 1;
                break;
            }
            posix_spawn_file_actions_adddup2(&actions, fds[0], 1);
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
        }
        int failed = posix_spawn(&pids[spawned], "/bin/bash", &actions, &attr, args, environ);
        posix_spawn_file_actions_destroy(&actions);
        for (int k = 0; k < 2; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        if (failed != 0) {
            perror("posix_spawn");
            status = 1;
            break;
        }
    }
    if (status == 0) {
        printf("running\n");
        fflush(stdout);
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
    }
    for (int i = 0; i < spawned; i++)
        kill(pids[i], SIGKILL);
    for (int i = 0; i < spawned; i++)
        waitpid(pids[i], NULL, 0);
    return status;
}
