/* The launch bench's C floor (bench/bench_launch.py): what a supervisor written in C pays to
 * start N processes on this machine. posix_spawns N `/bin/bash -c CMD`, each in its own
 * session, prints one line, then waits for its stdin to close, kills its children with
 * SIGKILL and reaps them. Built by the bench with the machine's `cc -O2`.
 *
 *     floor_spawner N CMD
 */
#define _GNU_SOURCE
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s N CMD\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]);
    pid_t *pids = calloc(n > 0 ? n : 1, sizeof(pid_t));
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    char *args[] = {"/bin/bash", "-c", argv[2], NULL};
    int spawned = 0, status = 0;
    for (; spawned < n; spawned++) {
        if (posix_spawn(&pids[spawned], "/bin/bash", NULL, &attr, args, environ) != 0) {
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
