#define _GNU_SOURCE
#include "cshim.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

int cshim_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int cshim_set_parent_death_signal(int signo) { return prctl(PR_SET_PDEATHSIG, signo, 0, 0, 0); }

int cshim_sigrtmin(void) { return SIGRTMIN; }

int cshim_sigrtmax(void) { return SIGRTMAX; }

// The kernel's struct sigaction for rt_sigaction(2), which glibc's sigaction() does not let
// through for its reserved signals.
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

// Signals 32 .. SIGRTMIN-1, the C library's own, set to `handler`.
static int set_reserved_signals(void (*handler)(int)) {
    struct kernel_sigaction action = {.handler = handler};
    for (int signo = 32; signo < SIGRTMIN; signo++) {
        if (syscall(SYS_rt_sigaction, signo, &action, NULL, sizeof action.mask) != 0) return -1;
    }
    return 0;
}

int cshim_ignore_reserved_signals(void) { return set_reserved_signals(SIG_IGN); }

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

// Every descriptor from `first` up closed on exec: a child gets 0-2 and what it is handed, never
// what grpc-init holds or inherited. close_range(2) where the kernel has it (5.11), else each in turn.
static void close_on_exec_from(int first) {
    if (syscall(SYS_close_range, (unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > (1L << 20)) limit = 1L << 20;
    // EBADF for every number that is not open, which is most of them: nothing to close there.
    for (long fd = first; fd < limit; fd++) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
}

int cshim_descriptor_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

const char *cshim_call_name(int call) {
    switch (call) {
    case CSHIM_CALL_EXEC: return "exec";
    case CSHIM_CALL_SETPGID: return "setpgid";
    case CSHIM_CALL_TCSETPGRP: return "tcsetpgrp";
    case CSHIM_CALL_RT_SIGACTION: return "rt_sigaction";
    case CSHIM_CALL_FCNTL: return "fcntl";
    case CSHIM_CALL_SETENV: return "setenv";
    case CSHIM_CALL_SIGPROCMASK: return "sigprocmask";
    case CSHIM_CALL_DUP2: return "dup2";
    case CSHIM_CALL_OPEN: return "open";
    case CSHIM_CALL_PRCTL: return "prctl";
    default: return "unknown call";
    }
}

struct cshim_child_failure cshim_spawn_failure(const struct cshim_spawn_report *report, int index) {
    return report->failures[index];
}

// In a forked child: one failed call, through the exec-report pipe `fd` to the parent, which
// reads until exec closes it. Each record is one write of less than PIPE_BUF, so it arrives whole.
static void report_child_failure(int fd, int call, int error, int fatal) {
    struct cshim_child_failure failure = {call, error, fatal};
    // A report that cannot be written has nowhere else to go: a fatal one's exit status still
    // says the child did not run.
    ssize_t ignored = write(fd, &failure, sizeof failure);
    (void)ignored;
}

// In the parent: the records the child wrote before it exec'd or exited (end of file), at most
// CSHIM_SPAWN_FAILURES (the child writes fewer).
static void read_child_failures(int fd, struct cshim_spawn_report *report) {
    report->count = 0;
    struct cshim_child_failure failure;
    for (int reads = 0; reads < 4 * CSHIM_SPAWN_FAILURES; reads++) {
        ssize_t n = read(fd, &failure, sizeof failure);
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)sizeof failure) return;  // end of file: exec'd, or exited
        if (report->count < CSHIM_SPAWN_FAILURES) report->failures[report->count++] = failure;
    }
}

pid_t cshim_spawn(const char *file, char *const argv[], const sigset_t *child_mask,
                  int new_process_group, int foreground_fd, int listen_fds, struct cshim_spawn_report *report) {
    int pipe_ends[2];
    report->count = 0;
    // Lands above the descriptors the child is handed: those were checked open before grpc-init
    // opened anything (SocketActivation), so the lowest free descriptors lie past them.
    if (pipe2(pipe_ends, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(pipe_ends[0]);
        close(pipe_ends[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        // The parent's end: the child's copy goes at exec anyway (close-on-exec).
        close(pipe_ends[0]);
        int out = pipe_ends[1];
        if (new_process_group) {
            // Without a group of its own, the signals forwarded to the group would miss it.
            if (setpgid(0, 0) != 0) {
                report_child_failure(out, CSHIM_CALL_SETPGID, errno, 1);
                _exit(126);
            }
            // SIGTTOU is still blocked here, so a background group may take the terminal. Without
            // it the child runs all the same, in the terminal's background.
            if (foreground_fd >= 0 && tcsetpgrp(foreground_fd, getpid()) != 0) {
                report_child_failure(out, CSHIM_CALL_TCSETPGRP, errno, 0);
            }
        }
        // What grpc-init ignores for itself is not the child's: an ignored disposition survives
        // exec, so the child would start without the default for them (the C library's own
        // signals, which no program sends: it runs all the same).
        if (set_reserved_signals(SIG_DFL) != 0) report_child_failure(out, CSHIM_CALL_RT_SIGACTION, errno, 0);
        // Socket activation passed on: the descriptors at 3.. open across exec (the supervisor
        // keeps them close-on-exec, so that the agent does not get them), and LISTEN_PID the
        // child's own, which only the child knows. A child told of descriptors it lacks would
        // take whatever it opens there for them: it does not run.
        close_on_exec_from(3 + (listen_fds > 0 ? listen_fds : 0));
        if (listen_fds > 0) {
            for (int fd = 3; fd < 3 + listen_fds; fd++) {
                if (fcntl(fd, F_SETFD, 0) != 0) {
                    report_child_failure(out, CSHIM_CALL_FCNTL, errno, 1);
                    _exit(126);
                }
            }
            char pid_text[24];
            snprintf(pid_text, sizeof pid_text, "%d", (int)getpid());
            if (setenv("LISTEN_PID", pid_text, 1) != 0) {
                report_child_failure(out, CSHIM_CALL_SETENV, errno, 1);
                _exit(126);
            }
        }
        // With grpc-init's mask (every signal blocked) the child could not be stopped by one.
        if (sigprocmask(SIG_SETMASK, child_mask, NULL) != 0) {
            report_child_failure(out, CSHIM_CALL_SIGPROCMASK, errno, 1);
            _exit(126);
        }
        execvp(file, argv);
        int failure = errno;
        report_child_failure(out, CSHIM_CALL_EXEC, failure, 1);
        _exit(failure == ENOENT ? 127 : 126);
    }
    // The child's end, which the parent does not use; closing it cannot fail for a pipe.
    close(pipe_ends[1]);
    read_child_failures(pipe_ends[0], report);
    // Read to its end: nothing is lost if the close fails.
    close(pipe_ends[0]);
    return pid;
}

void cshim_discard_own_sigpipe(void) {
    sigset_t pending;
    // sigpending(2) fails only for a bad pointer: then nothing is known to be pending.
    if (sigpending(&pending) != 0 || !sigismember(&pending, SIGPIPE)) return;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {}
}

int cshim_pipe_nonblocking_end(int fds[2], int end) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    int flags = fcntl(fds[end], F_GETFL);
    if (flags < 0 || fcntl(fds[end], F_SETFL, flags | O_NONBLOCK) != 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    return 0;
}

pid_t cshim_spawn_helper(const char *path, char *const argv[], const sigset_t *child_mask, int output_fd, int input_fd,
                         int inherited_fd, int second_fd, struct cshim_spawn_report *report) {
    pid_t parent = getpid();
    report->count = 0;
    // Returns once the helper has exec'd (or failed to): no forked copy of this process lives
    // on, sharing its written pages (what cshim_idle_poll's release relies on). The pipe's end
    // sits above the descriptors the helper is handed.
    int pipe_ends[2];
    if (pipe2(pipe_ends, O_CLOEXEC) < 0) return -1;
    int writer = fcntl(pipe_ends[1], F_DUPFD_CLOEXEC, 16);
    int saved = errno;
    // The original write end, a duplicate now (or the pipe is abandoned below): closing a pipe's
    // end cannot fail in a way that matters.
    close(pipe_ends[1]);
    if (writer < 0) {
        close(pipe_ends[0]);
        errno = saved;
        return -1;
    }
    pid_t pid = fork();
    if (pid != 0) {
        saved = errno;
        close(writer);
        if (pid > 0) read_child_failures(pipe_ends[0], report);
        close(pipe_ends[0]);
        errno = saved;
        return pid;
    }
    close(pipe_ends[0]);
    if (dup2(output_fd, STDOUT_FILENO) < 0) {
        report_child_failure(writer, CSHIM_CALL_DUP2, errno, 1);
        _exit(127);
    }
    if (input_fd >= 0) {
        if (dup2(input_fd, STDIN_FILENO) < 0) {
            report_child_failure(writer, CSHIM_CALL_DUP2, errno, 1);
            _exit(127);
        }
    } else {
        // No input: /dev/null, or else none at all (a read then fails, which the helper takes
        // as the end of its input).
        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0) {
            report_child_failure(writer, null_fd < 0 ? CSHIM_CALL_OPEN : CSHIM_CALL_DUP2, errno, 0);
            close(STDIN_FILENO);
        }
    }
    // Nothing of the supervisor's, or of what it inherited, crosses exec but what is handed.
    close_on_exec_from(3);
    // The descriptors handed down (the health port's listener, the local probe socket) as 3
    // and 4, open across exec: first out of the way, so that neither overwrites the other.
    int handed[2] = {inherited_fd, second_fd};
    int moved[2] = {-1, -1};
    for (int i = 0; i < 2; i++) {
        if (handed[i] >= 0 && (moved[i] = fcntl(handed[i], F_DUPFD_CLOEXEC, 10)) < 0) {
            report_child_failure(writer, CSHIM_CALL_FCNTL, errno, 1);
            _exit(127);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (moved[i] >= 0 && dup2(moved[i], 3 + i) < 0) {
            report_child_failure(writer, CSHIM_CALL_DUP2, errno, 1);
            _exit(127);
        }
    }
    // A helper in the supervisor's group would die of a terminal's ^C, which is the
    // supervisor's to forward.
    if (setpgid(0, 0) != 0) {
        report_child_failure(writer, CSHIM_CALL_SETPGID, errno, 1);
        _exit(127);
    }
    // Asked for before exec and checked after: a supervisor that died in between is seen (and
    // is not there to read a report).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        report_child_failure(writer, CSHIM_CALL_PRCTL, errno, 1);
        _exit(127);
    }
    if (getppid() != parent) _exit(127);
    if (sigprocmask(SIG_SETMASK, child_mask, NULL) != 0) {
        report_child_failure(writer, CSHIM_CALL_SIGPROCMASK, errno, 1);
        _exit(127);
    }
    execv(path, argv);
    report_child_failure(writer, CSHIM_CALL_EXEC, errno, 1);
    _exit(127);
}

int cshim_unix_address(const char *name, size_t size, int abstract, struct sockaddr_un *address, socklen_t *length) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    // A path ends with its NUL inside sun_path; an abstract name, after its leading NUL, may
    // fill it (its length is the address's).
    size_t offset = abstract ? 1 : 0;
    if (size == 0 || offset + size + (abstract ? 0 : 1) > sizeof address->sun_path) {
        errno = EINVAL;
        return -1;
    }
    memcpy(address->sun_path + offset, name, size);
    *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + offset + size + (abstract ? 0 : 1));
    return 0;
}

int cshim_notify_connect(const char *path) {
    struct sockaddr_un address;
    socklen_t length;
    int abstract = path[0] == '@';
    const char *name = abstract ? path + 1 : path;
    if (cshim_unix_address(name, strlen(name), abstract, &address, &length) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&address, length) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

// Our executable's mappings that are never written: code (r-xp) and the read-only data at the
// start of the file (r--p at offset 0). The writable ones (data, and RELRO, which start-up
// fix-ups wrote) only page by page: MADV_DONTNEED would revert a written page to the file's
// contents, so only pages still the file's own (never written) are released there.
static unsigned long code_ranges[8][2];
static int code_range_count = -1;
static unsigned long data_ranges[8][2];
static int data_range_count = 0;

int cshim_parse_executable_ranges(FILE *maps, int writable, unsigned long ranges[][2], int capacity) {
    int count = 0;
    char line[512], path[256] = "";
    while (count < capacity && fgets(line, sizeof line, maps)) {
        unsigned long start, end, offset;
        char perms[8];
        int consumed = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &start, &end, perms, &offset, &consumed) < 4 || consumed == 0) continue;
        char *name = line + consumed;
        name[strcspn(name, "\n")] = 0;
        if (!path[0]) snprintf(path, sizeof path, "%s", name);  // the first mapping is the executable
        if (strcmp(name, path) != 0 || end <= start) continue;
        int never_written = strcmp(perms, "r-xp") == 0 || (strcmp(perms, "r--p") == 0 && offset == 0);
        int written = strcmp(perms, "rw-p") == 0 || (strcmp(perms, "r--p") == 0 && offset != 0);
        if (writable ? written : never_written) {
            ranges[count][0] = start;
            ranges[count][1] = end;
            count++;
        }
    }
    return count;
}

static void find_code_ranges(void) {
    code_range_count = 0;
    FILE *maps = fopen("/proc/self/maps", "re");
    // Without /proc nothing is known to release: the process only stays larger while idle.
    if (!maps) return;
    code_range_count = cshim_parse_executable_ranges(maps, 0, code_ranges, 8);
    rewind(maps);
    data_range_count = cshim_parse_executable_ranges(maps, 1, data_ranges, 8);
    fclose(maps);
}

// The pages of the writable mappings that were only read (present, and still the file's page:
// pagemap's bit 61; a written page is the process's own anonymous copy) are released too: they
// fault back in from the page cache as they were. Bit 61 also marks shared anonymous pages,
// which a written page would be while a forked copy of this process lives (none does: every
// fork here execs before the spawn returns) or when KSM merged it (only when asked for: then
// nothing is released). Nothing runs between the look and the release.
static void release_unwritten_data(void) {
    if (prctl(68 /* PR_GET_MEMORY_MERGE, Linux 6.4 */, 0, 0, 0, 0) > 0) return;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    // Without pagemap no page is known unwritten: none is released (a cost in memory only).
    if (fd < 0) return;
    const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
    uint64_t entries[256];
    for (int r = 0; r < data_range_count; r++) {
        unsigned long run = 0, run_length = 0;
        for (unsigned long at = data_ranges[r][0]; at < data_ranges[r][1];) {
            unsigned long pages = (data_ranges[r][1] - at) / page;
            if (pages > 256) pages = 256;
            ssize_t n = pread(fd, entries, pages * sizeof entries[0], (off_t)(at / page * sizeof entries[0]));
            if (n <= 0) break;
            pages = (unsigned long)n / sizeof entries[0];
            for (unsigned long i = 0; i < pages; i++, at += page) {
                int unwritten = (entries[i] >> 63 & 1) && (entries[i] >> 61 & 1);
                if (unwritten) {
                    if (run_length == 0) run = at;
                    run_length += page;
                } else if (run_length > 0) {
                    // A release that fails leaves the pages resident: a cost in memory only.
                    (void)madvise((void *)run, run_length, MADV_DONTNEED);
                    run_length = 0;
                }
            }
        }
        if (run_length > 0) (void)madvise((void *)run, run_length, MADV_DONTNEED);
    }
    // Read only: nothing is lost if the close fails.
    close(fd);
}

int cshim_idle_poll(struct pollfd *fds, nfds_t count, int timeout) {
    if (code_range_count < 0) find_code_ranges();
    // The data first: its walk runs code (open, pread, madvise) that the code's release would
    // otherwise fault back in, window by window. After the code's release only this function's
    // tail and poll's entry run.
    release_unwritten_data();
    // As above: a release that fails leaves the pages resident.
    for (int i = 0; i < code_range_count; i++) {
        (void)madvise((void *)code_ranges[i][0], code_ranges[i][1] - code_ranges[i][0], MADV_DONTNEED);
    }
    return poll(fds, count, timeout);
}

int cshim_accept(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cshim_peer_pid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return credentials.pid;
}

int cshim_listen_abstract(const char *name, int backlog) {
    struct sockaddr_un address;
    socklen_t length;
    if (cshim_unix_address(name, strlen(name), 1, &address, &length) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&address, length) != 0 || listen(fd, backlog) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cshim_close_on_exec(int fd) { return fcntl(fd, F_SETFD, FD_CLOEXEC); }

int cshim_listen_tcp(const char *host, unsigned short port, int backlog, const char **step) {
    struct sockaddr_storage address;
    memset(&address, 0, sizeof address);
    socklen_t length;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
    if (host[0] != 0 && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        length = sizeof *v4;
    } else if (host[0] == 0 || inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;  // host empty: in6addr_any, all zeros
        v6->sin6_port = htons(port);
        length = sizeof *v6;
    } else {
        *step = "parse";
        errno = EINVAL;
        return -1;
    }
    int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && host[0] == 0 && errno == EAFNOSUPPORT) {
        // No IPv6 in this kernel: every IPv4 address.
        memset(&address, 0, sizeof address);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        length = sizeof *v4;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        *step = "socket";
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        *step = "setsockopt";
    } else if (bind(fd, (struct sockaddr *)&address, length) != 0) {
        *step = "bind";
    } else if (listen(fd, backlog) != 0) {
        *step = "listen";
    } else {
        return fd;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}
