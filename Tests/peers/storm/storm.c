// storm PID SIGNO SECONDS: queues SIGNO at PID as fast as it can, for at most SECONDS or until
// SIGTERM, then prints how many signals were queued and how many the kernel refused (its queue
// of pending real-time signals was full). The adversary of the supervisor's storm tests.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop = 0;

static void on_term(int signo) {
    (void)signo;
    stop = 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: storm PID SIGNO SECONDS\n");
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    int signo = atoi(argv[2]);
    double until = now() + atof(argv[3]);
    signal(SIGTERM, on_term);
    unsigned long queued = 0, refused = 0;
    int announced = 0;
    while (!stop) {
        for (int i = 0; i < 1000; i++) {
            union sigval value = {.sival_int = 0};
            if (sigqueue(pid, signo, value) == 0) {
                queued++;
            } else if (errno == EAGAIN) {
                refused++;
            } else {
                stop = 1;  // the target is gone
                break;
            }
        }
        // Said once the storm is under way: the target's queue of pending signals is full, or a
        // hundred thousand went out.
        if (!announced && (refused > 0 || queued >= 100000)) {
            printf("storming\n");
            fflush(stdout);
            announced = 1;
        }
        if (now() >= until) break;
    }
    printf("queued %lu refused %lu\n", queued, refused);
    return 0;
}
