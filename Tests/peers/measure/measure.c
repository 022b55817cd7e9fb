/* Runs a command and reports what it cost, for the tests that bound a probe's memory or work and
 * for the benchmarks. A launcher of its own, because Linux counts the address space before exec
 * in the child's peak RSS: started from Python, a probe would look as large as the interpreter.
 *
 *   measure COMMAND [ARGS...]       once: prints "PID <pid>" when it runs, then "EXIT <status>
 *                                   RSS <KiB> MINFLT <faults> CPU <microseconds>" (status as a
 *                                   shell gives it); stdio is the command's
 *   measure -n N COMMAND [ARGS...]  N times, the command's stderr to /dev/null: one line per
 *                                   run, "<wall us> <cpu us> <peak RSS KiB> <status>" */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static long micros(struct timeval t) { return t.tv_sec * 1000000L + t.tv_usec; }

static int status_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

int main(int argc, char **argv) {
    int runs = 0, first = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        runs = atoi(argv[2]);
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: measure [-n RUNS] COMMAND [ARGS...]\n");
        return 2;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (runs) posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < (runs ? runs : 1); i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        pid_t pid;
        int failed = posix_spawn(&pid, argv[first], &actions, NULL, &argv[first], environ);
        if (failed) {
            fprintf(stderr, "measure: cannot run %s: error %d\n", argv[first], failed);
            return 2;
        }
        if (!runs) {
            printf("PID %d\n", (int)pid);
            fflush(stdout);
        }
        int status;
        struct rusage usage;
        while (wait4(pid, &status, 0, &usage) < 0) {}
        clock_gettime(CLOCK_MONOTONIC, &b);
        long cpu = micros(usage.ru_utime) + micros(usage.ru_stime);
        if (runs) {
            long wall = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000;
            printf("%ld %ld %ld %d\n", wall, cpu, usage.ru_maxrss, status_code(status));
        } else {
            printf("EXIT %d RSS %ld MINFLT %ld CPU %ld\n", status_code(status), usage.ru_maxrss, usage.ru_minflt, cpu);
        }
    }
    return 0;
}
