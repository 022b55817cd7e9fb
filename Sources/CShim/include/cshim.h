#ifndef GRPC_INIT_CSHIM_H
#define GRPC_INIT_CSHIM_H
#include <signal.h>
#include <sys/types.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <termios.h>

// Each returns -1 with errno set on failure, like the call it wraps.
int cshim_set_child_subreaper(void);
int cshim_set_parent_death_signal(int signo);
int cshim_sigrtmin(void);
int cshim_sigrtmax(void);

// poll(2) for a process about to stay idle: first drops the pages of its own code and read-only
// data from its resident set (they stay in the page cache and fault back in on demand), so that
// only what runs after the wait is resident again. One C function, so that little code runs
// between the release and the wait.
#include <poll.h>
int cshim_idle_poll(struct pollfd *fds, nfds_t count, int timeout);

/// The C library's version ("2.36"), for -version -v.
const char *cshim_libc_version(void);

#include <stdio.h>
/// Reads /proc/self/maps' lines from `maps`: the executable's mappings that are never written
/// (r-xp, and r--p at offset 0), or with `writable` those that may be (rw-p, and RELRO: r--p
/// further in), at most `capacity`, as [start, end) pairs. Returns how many.
int cshim_parse_executable_ranges(FILE *maps, int writable, unsigned long ranges[][2], int capacity);

// The process's argc and argv as the C library passed them: every byte as given, and available
// without /proc.
int cshim_argc(void);
char **cshim_argv(void);
// The path this executable was started by (the kernel's AT_EXECFN), for running it again
// without /proc.
const char *cshim_exec_path(void);

// Sets SIGCANCEL and SIGSETXID, the two real-time signals the C library keeps for itself (and
// refuses to let sigaction(2) change), to be ignored, so that one sent from outside cannot end
// a process that uses neither (no threads, no pthread_cancel). Returns 0, or -1 with errno set.
int cshim_ignore_reserved_signals(void);

// A call a spawned child made between fork and exec that failed, as the child reports it to
// the parent through the pipe that exec closes. `call` is one of CSHIM_CALL_*; `fatal`: the
// child exited without running the command (126 or 127), else it went on without what the call
// was for.
enum {
    CSHIM_CALL_EXEC = 1,
    CSHIM_CALL_SETPGID,
    CSHIM_CALL_TCSETPGRP,
    CSHIM_CALL_RT_SIGACTION,
    CSHIM_CALL_FCNTL,
    CSHIM_CALL_SETENV,
    CSHIM_CALL_SIGPROCMASK,
    CSHIM_CALL_DUP2,
    CSHIM_CALL_OPEN,
    CSHIM_CALL_PRCTL,
};
struct cshim_child_failure {
    int call;
    int error;
    int fatal;
};
#define CSHIM_SPAWN_FAILURES 8
// What a spawned child reported before it exec'd (count 0: nothing failed) or exited.
struct cshim_spawn_report {
    struct cshim_child_failure failures[CSHIM_SPAWN_FAILURES];
    int count;
};
// The call's name, as the C library's manual spells it ("setpgid").
const char *cshim_call_name(int call);
// report->failures[index], index < report->count (a C array is a tuple to Swift).
struct cshim_child_failure cshim_spawn_failure(const struct cshim_spawn_report *report, int index);

// fork + exec in C: between fork and exec only async-signal-safe calls are allowed, which Swift
// cannot promise. The child gets its own process group when new_process_group is set, takes the
// terminal's foreground when foreground_fd >= 0, restores child_mask, then execvp()s file. With
// listen_fds > 0 (socket activation), descriptors 3 to 3+listen_fds-1 stay open across exec and
// LISTEN_PID is set to the child's pid; every other descriptor from 3 up is closed on exec.
// Returns the child's pid, or -1 with errno set when fork failed. `report` receives each call
// of the child's that failed; with a fatal one (exec's, or one without which the command must
// not run) the child has exited (127 when exec found no file, else 126) and must be reaped.
pid_t cshim_spawn(const char *file, char *const argv[], const sigset_t *child_mask,
                  int new_process_group, int foreground_fd, int listen_fds, struct cshim_spawn_report *report);

// A close-on-exec pipe whose end fds[end] does not block: the supervisor reads a helper's
// reports (end 0) and tells it things (end 1) without ever waiting on it; the helper's end is
// an ordinary pipe.
int cshim_pipe_nonblocking_end(int fds[2], int end);

// fork + execv of `path` (no PATH search) for a helper of ours: child_mask restored, stdout on
// output_fd, stdin input_fd (or /dev/null when it is -1), a process group of its own (a terminal's ^C is the supervisor's
// to forward, not the helper's to die of), and SIGKILL when the supervisor dies; inherited_fd
// and second_fd (when >= 0) become its descriptors 3 and 4, and nothing above them stays open across
// exec. A failed call before exec, exec's own included, is reported in `report` (as for
// cshim_spawn) and the helper exits 127. Returns the pid, or -1 with errno set.
pid_t cshim_spawn_helper(const char *path, char *const argv[], const sigset_t *child_mask, int output_fd, int input_fd,
                         int inherited_fd, int second_fd, struct cshim_spawn_report *report);

/// A non-blocking unix stream socket listening on the abstract name `name` (no leading NUL),
/// close on exec. Returns the descriptor, or -1 with errno set.
int cshim_listen_abstract(const char *name, int backlog);

/// The pid of a unix socket's peer as this process's PID namespace sees it (0: a process
/// outside it), or -1 with errno set.
int cshim_peer_pid(int fd);

/// FD_CLOEXEC on `fd` (fcntl is variadic). Returns 0, or -1 with errno set.
int cshim_close_on_exec(int fd);

/// A non-blocking TCP socket listening on `host` (an IPv4 or IPv6 literal; empty: every address,
/// IPv6 and IPv4 together where the kernel has IPv6) and `port`, with SO_REUSEADDR and close on
/// exec. Returns the descriptor, or -1 with errno set and `*step` naming the call that failed.
int cshim_listen_tcp(const char *host, unsigned short port, int backlog, const char **step);

// After a write(2) failed with EPIPE in a process that blocks SIGPIPE (the supervisor, which
// reads signals from a signalfd): takes back the SIGPIPE that write raised, so that it is not
// read as a signal to forward.
void cshim_discard_own_sigpipe(void);

// A non-blocking, close-on-exec datagram socket connected to the unix socket `path` ("@name":
// an abstract one), for sd_notify(3)'s messages: a send never waits for a reader that does not
// read, and poll(2)'s POLLOUT on it says when the reader's queue has room again. Returns the
// descriptor, or -1 with errno set.
int cshim_notify_connect(const char *path);

// Whether `fd` is an open descriptor of this process.
int cshim_descriptor_is_open(int fd);
// The one builder of unix socket addresses, for C and Swift alike: `size` bytes of `name`, a
// path, or with `abstract` a name in the abstract namespace (no leading NUL given). Returns 0,
// or -1 with errno EINVAL when it is empty or does not fit.
#include <sys/socket.h>
#include <sys/un.h>
int cshim_unix_address(const char *name, size_t size, int abstract, struct sockaddr_un *address, socklen_t *length);
// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (a GNU extension the Swift importer does not see).
int cshim_accept(int fd);

#endif
