/* Runs one command and reports what it cost, for tests that bound a process's memory or work.
 * Prints "PID <pid>" once the command runs, then "EXIT <status> RSS <KiB> MINFLT <faults>
 * CPU <microseconds>" when it ended (status as a shell gives it). A launcher of its own, because Linux counts the address space
 * before exec in the child's peak RSS: started from Python, a probe would look as large as the
 * interpreter. */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: measure COMMAND [ARGS...]\n");
        return 2;
    }
    pid_t pid;
    int failed = posix_spawn(&pid, argv[1], NULL, NULL, &argv[1], environ);
    if (failed) {
        fprintf(stderr, "measure: cannot run %s: error %d\n", argv[1], failed);
        return 2;
    }
    printf("PID %d\n", (int)pid);
    fflush(stdout);
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0) {}
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    long cpu = usage.ru_utime.tv_sec * 1000000L + usage.ru_utime.tv_usec + usage.ru_stime.tv_sec * 1000000L + usage.ru_stime.tv_usec;
    printf("EXIT %d RSS %ld MINFLT %ld CPU %ld\n", code, usage.ru_maxrss, usage.ru_minflt, cpu);
    return 0;
}
