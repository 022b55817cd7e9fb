"""grpc-init as PID 1 of a PID namespace (unshare --pid --fork) against what its environment may
throw at it: a NOTIFY_SOCKET nobody reads, LISTEN_FDS naming descriptors that are not open or
leaving others unnamed, durations at Go's largest, a stop that the health actions must not
turn into a failure, a hung server whose Watch stays open, values longer than the gate
protocol carries. Every wait has a deadline; a grpc-init that hangs is killed (SIGKILL to PID 1
ends its whole namespace) and the test fails saying so."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from conftest import GO_SERVER, PEERS, LineReader
from test_readiness import AGENT, children, command_of


def _unshare_works():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="grpc-init runs as PID 1 of a new PID namespace: unshare --pid needs root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed"),
    pytest.mark.skipif(not _unshare_works(), reason="unshare --pid --fork --mount-proc does not work here"),
]

GO_MAX = "2562047h47m16.854775807s"
STOPPING = PEERS / "stopping.py"

# Puts descriptors at the numbers a test wants (SRC:DST,...) and execs the rest of its
# arguments: the descriptors grpc-init inherits are exactly these and 0-2.
PLACE_FDS = r"""
import fcntl, os, sys
pairs = [tuple(int(n) for n in p.split(":")) for p in sys.argv[1].split(",") if p]
high = [(fcntl.fcntl(src, fcntl.F_DUPFD, 200), dst) for src, dst in pairs]
for src, _ in pairs:
    os.close(src)
for fd, dst in high:
    os.dup2(fd, dst)
    os.close(fd)
os.execvp(sys.argv[2], sys.argv[2:])
"""

# The child of the socket-activation tests: one JSON line with the descriptors it has (each
# with its inode, looked at with fstat, which opens none), LISTEN_FDS and LISTEN_PID, then it
# waits for a signal (SIGTERM ends it, by its default action).
REPORT_FDS = r"""
import json, os, time
fds = []
for fd in range(1024):
    try:
        fds.append([fd, os.fstat(fd).st_ino])
    except OSError:
        pass
print(json.dumps({"pid": os.getpid(), "fds": fds, "LISTEN_FDS": os.environ.get("LISTEN_FDS"),
                  "LISTEN_PID": os.environ.get("LISTEN_PID")}), flush=True)
time.sleep(60)
"""


class Pid1:
    """grpc-init as PID 1 under unshare: its stdout (the child's) and stderr as line readers."""

    def __init__(self, bindir, args, command, env=None, stdin=None, fds=None):
        argv = ["unshare", "--pid", "--fork", "--mount-proc", str(bindir / "grpc-init"), *args, "--", *command]
        pass_fds = ()
        if fds:
            argv = [sys.executable, "-I", "-S", "-c", PLACE_FDS, ",".join(f"{src}:{dst}" for src, dst in fds.items()), *argv]
            pass_fds = tuple(fds)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL if stdin is None else stdin, env=env,
                                     pass_fds=pass_fds)
        self.out = LineReader(self.proc)
        self.log = LineReader(self.proc, self.proc.stderr)
        self.lines = []  # grpc-init's lines read so far
        # The PLACE_FDS launcher execs unshare in place: its only child is grpc-init all the same.
        self.pid = self.first_child()

    def first_child(self):
        """unshare's child, grpc-init, once there is one; None if unshare ended first (grpc-init
        died at once: what it said is read, and the test's next wait reports it)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    found = f.read().split()
            except OSError:
                found = []
            if found:
                return int(found[0])
            if self.proc.poll() is not None:
                return None
            time.sleep(0.005)  # process start-up, which nothing signals; bounded
        raise TimeoutError("unshare started no child")

    def until(self, text, timeout):
        """grpc-init's first line from here starting with `text`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.log.next(deadline)
            except (TimeoutError, EOFError) as e:
                line, why = None, e
            if line is None:
                if isinstance(why, EOFError):
                    try:
                        self.proc.wait(timeout=5)  # its stderr closed: it is ending
                    except subprocess.TimeoutExpired:
                        pass
                pytest.fail(f"no line starting {text!r} within {timeout}s ({why}; grpc-init {self.kernel_state()}, "
                            f"exit {self.proc.poll()}, negative: killed by that signal); its lines: {self.lines}")
            self.lines.append(line)
            if line.startswith(text):
                return line

    def signal(self, signo):
        os.kill(self.pid, signo)

    def exit_code(self, timeout, why=""):
        """grpc-init's exit status (unshare passes it on), which must come within `timeout`;
        its remaining lines are read too. A grpc-init still running then is killed."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            state = self.kernel_state()
            self.kill()
            pytest.fail(f"grpc-init still running {timeout}s {why}; it was {state}; killed")
        self.lines += self.log.rest(time.monotonic() + 5)
        return code

    def kernel_state(self):
        if self.pid is None:
            return "gone"
        try:
            with open(f"/proc/{self.pid}/syscall") as f:
                syscall = f.read().split()[0]
            with open(f"/proc/{self.pid}/wchan") as f:
                wchan = f.read()
            return f"in system call {syscall} ({wchan})"
        except OSError:
            return "gone"

    def server_pid(self):
        """The child (as seen from here): grpc-init's child that is not its health agent."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [c for c in children(self.pid) if command_of(c) not in (AGENT, "")]
            if found:
                return found[0]
            time.sleep(0.005)  # process start-up, which nothing signals; bounded
        raise TimeoutError("no child")

    def stays_up(self, seconds):
        """grpc-init has not exited `seconds` from now (what is checked is that nothing happens)."""
        try:
            code = self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return True
        self.lines += self.log.rest(time.monotonic() + 5)
        pytest.fail(f"grpc-init exited with {code} (a negative code: killed by that signal); its lines: {self.lines}")

    def kill(self):
        if self.proc.poll() is None:
            try:
                # PID 1 gone, the kernel kills the rest of its namespace.
                os.kill(self.pid, signal.SIGKILL) if self.pid else self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


@contextmanager
def pid1(bindir, args, command, **kwargs):
    g = Pid1(bindir, args, command, **kwargs)
    try:
        yield g
    finally:
        g.kill()
        for stream in (g.proc.stdout, g.proc.stderr, g.proc.stdin):
            if stream:
                stream.close()


def go_server(*args):
    return [str(GO_SERVER), "-addr", "127.0.0.1:0", *args]


# MARK: a NOTIFY_SOCKET nobody reads


@contextmanager
def stalled_notify_socket(tmp_path):
    """A datagram socket bound and not read, its queue filled to what the kernel holds
    (net.unix.max_dgram_qlen) and its buffer at the minimum: a manager that stopped reading.
    Every message sent to it from here on finds no room."""
    path = str(tmp_path / "notify.sock")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # rounded up to the kernel's minimum
    manager.bind(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setblocking(False)
        for _ in range(100_000):
            try:
                filler.sendto(b"FILLER=1", path)
            except BlockingIOError:
                break
        else:
            pytest.fail("the notify socket's queue never filled")
    try:
        yield path, manager
    finally:
        manager.close()


def notify_env(path, watchdog_usec="20000"):
    return dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=watchdog_usec)


def await_the_stall(g, timeout=5):
    """grpc-init found the queue full: it says so (a warning naming NOTIFY_SOCKET), or it sits
    blocked in sendto(2) (x86_64: 44). Either is an event; nothing to see by the deadline means
    it has not tried yet, and the test goes on regardless."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = g.log.next(min(deadline, time.monotonic() + 0.01))
            g.lines.append(line)
            if "NOTIFY_SOCKET" in line:
                return "warned"
        except TimeoutError:
            pass
        except EOFError:
            return None  # it exited: the next wait says how
        if g.kernel_state().startswith("in system call 44 "):
            return "blocked in sendto"
    return None


def test_a_stalled_notify_socket_holds_up_neither_sigterm_nor_the_exit(bindir, tmp_path):
    """WATCHDOG_USEC=20000 (a ping every 10 ms) into a socket whose queue is full: SIGTERM still
    reaches the child, grpc-init exits with the child's status, and says once (or twice: held
    back, then delivered) that NOTIFY_SOCKET is not taking messages, not once per message."""
    with stalled_notify_socket(tmp_path) as (path, _), pid1(bindir, [], go_server(), env=notify_env(path)) as g:
        g.out.until("READY ", time.monotonic() + 20)
        await_the_stall(g)
        g.stays_up(0.5)  # dozens of pings owed meanwhile
        g.signal(signal.SIGTERM)
        assert g.exit_code(5, "after SIGTERM with the notify socket stalled") == 128 + signal.SIGTERM
        about = [line for line in g.lines if "NOTIFY_SOCKET" in line]
        assert 1 <= len(about) <= 2, g.lines
        assert about[0].startswith("[grpc-init] warning: "), about


def test_a_notify_socket_stalled_from_the_start_gets_ready_and_stopping_once_read(bindir, tmp_path):
    """The queue is full before the server is ready: grpc-init goes on (the `ready:` line comes
    while nobody reads), and once the manager reads again READY=1 arrives, and STOPPING=1 after
    SIGTERM, before grpc-init exits."""
    with stalled_notify_socket(tmp_path) as (path, manager), pid1(bindir, [], go_server(), env=notify_env(path)) as g:
        g.until("[grpc-init] ready: ", 10)
        got = []

        def read_for(until):
            """Reads the socket until `until(messages)` holds or grpc-init has exited, then what
            is left in its queue; the messages, one line each."""
            deadline = time.monotonic() + 10
            while not until(got) and time.monotonic() < deadline and g.proc.poll() is None:
                manager.settimeout(0.05)
                try:
                    got.extend(manager.recv(4096).decode().splitlines())
                except socket.timeout:
                    pass
            return got
        assert "READY=1" in read_for(lambda m: "READY=1" in m), got
        g.signal(signal.SIGTERM)
        read_for(lambda m: False)  # until grpc-init has exited
        code = g.exit_code(5, "after SIGTERM")
        manager.setblocking(False)
        while True:
            try:
                got.extend(manager.recv(4096).decode().splitlines())
            except BlockingIOError:
                break
        assert "STOPPING=1" in got, got
        assert code == 128 + signal.SIGTERM, g.lines


# MARK: socket activation


def fd_report(g):
    return json.loads(g.out.next(time.monotonic() + 20))


def test_listen_fds_naming_descriptors_that_are_not_open_is_refused(bindir):
    """LISTEN_FDS=8 LISTEN_PID=1 with nothing open from descriptor 3: grpc-init says so, the child
    gets neither the variables nor any of descriptors 3 to 10 (grpc-init's own are there), and
    SIGTERM ends it as usual."""
    env = dict(os.environ, LISTEN_FDS="8", LISTEN_PID="1")
    with pid1(bindir, [], [sys.executable, "-I", "-S", "-c", REPORT_FDS], env=env) as g:
        report = fd_report(g)
        assert [fd for fd, _ in report["fds"]] == [0, 1, 2], report
        assert (report["LISTEN_FDS"], report["LISTEN_PID"]) == (None, None), report
        g.signal(signal.SIGTERM)
        assert g.exit_code(5, "after SIGTERM") == 128 + signal.SIGTERM
    warnings = [line for line in g.lines if line.startswith("[grpc-init] warning: ") and "LISTEN_FDS" in line]
    assert len(warnings) == 1, g.lines


def test_listen_fds_that_are_open_go_to_the_child_and_nothing_else(bindir):
    """Two listening sockets at 3 and 4, LISTEN_FDS=2 LISTEN_PID=1: the child has exactly 0-4,
    those two at 3 and 4, LISTEN_FDS=2 and LISTEN_PID its own pid."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    inodes = [os.fstat(s.fileno()).st_ino for s in listeners]
    env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID="1")
    try:
        with pid1(bindir, [], [sys.executable, "-I", "-S", "-c", REPORT_FDS], env=env,
                  fds={listeners[0].fileno(): 3, listeners[1].fileno(): 4}) as g:
            report = fd_report(g)
            assert [fd for fd, _ in report["fds"]] == [0, 1, 2, 3, 4], report
            assert [ino for fd, ino in report["fds"] if fd >= 3] == inodes, report
            assert (report["LISTEN_FDS"], report["LISTEN_PID"]) == ("2", str(report["pid"])), report
            g.signal(signal.SIGTERM)
            assert g.exit_code(5, "after SIGTERM") == 128 + signal.SIGTERM
    finally:
        for s in listeners:
            s.close()
    assert not [line for line in g.lines if "LISTEN_" in line], g.lines


def test_an_inherited_descriptor_not_named_by_listen_fds_stays_with_grpc_init(bindir):
    """A descriptor grpc-init inherited (7) that no LISTEN_FDS names is not the child's: the
    child has 0-2 only."""
    read_end, write_end = os.pipe()
    try:
        with pid1(bindir, [], [sys.executable, "-I", "-S", "-c", REPORT_FDS], fds={read_end: 7}) as g:
            report = fd_report(g)
            assert [fd for fd, _ in report["fds"]] == [0, 1, 2], report
            g.signal(signal.SIGTERM)
            assert g.exit_code(5, "after SIGTERM") == 128 + signal.SIGTERM
    finally:
        os.close(read_end)
        os.close(write_end)


# MARK: durations at Go's largest

DURATIONS = {
    "-ready-timeout": (["-ready-timeout", GO_MAX], {}),
    "GRPC_INIT_READY_TIMEOUT": ([], {"GRPC_INIT_READY_TIMEOUT": GO_MAX}),
    "-exit-unresponsive-after": (["-exit-unresponsive-after", GO_MAX], {}),
    "-exit-unhealthy-after": (["-exit-unhealthy-after", GO_MAX], {}),
    "-grace": (["-grace", GO_MAX], {}),
    "-leftover-grace": (["-leftover-grace", GO_MAX], {}),
    "-drain-delay": (["-drain-delay", GO_MAX], {}),
    "WATCHDOG_USEC": ([], {"WATCHDOG_USEC": "10000000000000000"}),
}


@pytest.mark.parametrize("name", list(DURATIONS))
def test_durations_at_gos_largest(bindir, tmp_path, name):
    """Ready, NOT_SERVING for a while, and alive ~1 s after; SIGTERM (with -drain-delay, a second
    one, which passes it on at once) ends it with the child's status. The child leaves a process
    behind, for -leftover-grace."""
    args, extra = DURATIONS[name]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), **extra)
    command = ["sh", "-c", f"sleep 1000 & exec {' '.join(go_server('-control'))}"]
    try:
        with pid1(bindir, args, command, env=env, stdin=subprocess.PIPE) as g:
            g.until("[grpc-init] ready: ", 10)
            g.proc.stdin.write(b"SET - NOT_SERVING\n")
            g.proc.stdin.flush()
            line = g.until("[grpc-init] health: ", 5)
            assert line.endswith("(was SERVING)"), line
            g.stays_up(1.0)
            g.signal(signal.SIGTERM)
            if name == "-drain-delay":
                g.until("[grpc-init] draining", 5)
                g.signal(signal.SIGTERM)
            assert g.exit_code(10, "after SIGTERM") == 128 + signal.SIGTERM, g.lines
        notify.setblocking(False)
        got = []
        while True:
            try:
                got.extend(notify.recv(4096).decode().splitlines())
            except BlockingIOError:
                break
        assert "READY=1" in got and "STOPPING=1" in got, got
        assert "WATCHDOG=1" not in got, got
    finally:
        notify.close()


# MARK: the health actions during a stop


def signals_of(lines):
    """The child's SIGNAL lines: [(signo, monotonic seconds)]."""
    return [(int(w[1]), float(w[2])) for w in (line.split() for line in lines) if w[:1] == ["SIGNAL"]]


def test_a_server_going_not_serving_as_it_shuts_down_is_not_unhealthy(bindir):
    """-exit-unhealthy-after 500ms; SIGTERM, and the server turns NOT_SERVING and takes 2 s to
    end, as a graceful shutdown does: its own status (0), one SIGTERM, no error."""
    with pid1(bindir, ["-exit-unhealthy-after", "500ms"], [sys.executable, str(STOPPING), "--serve", "--linger", "2"]) as g:
        g.until("[grpc-init] ready: ", 20)
        g.signal(signal.SIGTERM)
        code = g.exit_code(10, "after SIGTERM")
        child = g.out.rest(time.monotonic() + 5)
    assert [s for s, _ in signals_of(child)] == [signal.SIGTERM], child
    assert not [line for line in g.lines if line.startswith("[grpc-init] error: ")], g.lines
    assert code == 0, g.lines


def test_sigterm_before_ready_is_not_a_ready_timeout(bindir):
    """-ready-timeout 2s, SIGTERM before the child is ready, and the child takes 2.5 s to end:
    the stop under way is not cut short; its own status (0), one SIGTERM."""
    with pid1(bindir, ["-ready-timeout", "2s"], [sys.executable, str(STOPPING), "--linger", "2.5"]) as g:
        g.out.until("READY ", time.monotonic() + 20)
        g.signal(signal.SIGTERM)
        code = g.exit_code(10, "after SIGTERM")
        child = g.out.rest(time.monotonic() + 5)
    assert [s for s, _ in signals_of(child)] == [signal.SIGTERM], child
    assert not [line for line in g.lines if line.startswith("[grpc-init] error: ")], g.lines
    assert code == 0, g.lines


@pytest.mark.parametrize("ready", [True, False], ids=["ready", "starting"])
def test_the_drain_outlasts_the_ready_timeout(bindir, ready):
    """-drain-delay 5s -ready-timeout 2s, SIGTERM while the 2 s still run: the child gets SIGTERM
    5 s after grpc-init did, not at 2 s, and its status (0) is grpc-init's."""
    command = [sys.executable, str(STOPPING), "--linger", "0", *(["--serve"] if ready else [])]
    with pid1(bindir, ["-drain-delay", "5s", "-ready-timeout", "2s"], command) as g:
        if ready:
            g.until("[grpc-init] ready: ", 20)
        else:
            g.out.until("READY ", time.monotonic() + 20)
        sent = time.monotonic()
        g.signal(signal.SIGTERM)
        code = g.exit_code(15, "after SIGTERM")
        child = g.out.rest(time.monotonic() + 5)
    received = signals_of(child)
    assert [s for s, _ in received] == [signal.SIGTERM], child
    assert received[0][1] - sent >= 4.5, (received[0][1] - sent, g.lines)
    assert code == 0, g.lines


# MARK: a hung server


def test_exit_unhealthy_after_alone_ends_a_hung_server_with_its_watch_open(bindir):
    """-exit-unhealthy-after 1s with no -exit-unresponsive-after; the server stops (SIGSTOP): its
    Watch stays open and says nothing, and no answer is not SERVING either: exit 125."""
    with pid1(bindir, ["-exit-unhealthy-after", "1s"], go_server()) as g:
        g.until("[grpc-init] ready: ", 20)
        server = g.server_pid()
        os.kill(server, signal.SIGSTOP)
        try:
            line = g.until("[grpc-init] error: ", 8)
        finally:
            os.kill(server, signal.SIGCONT)  # the SIGTERM it was sent can then end it
        assert "-exit-unhealthy-after" in line, line
        assert g.exit_code(5, "after its verdict") == 125, g.lines


# MARK: values longer than the gate protocol carries

LONG = "a" * 5000
TOO_LONG = {
    "-ready-service": (["-ready-service", LONG], {}),
    "GRPC_INIT_READY_SERVICE": ([], {"GRPC_INIT_READY_SERVICE": LONG}),
    "-ready-addr": (["-ready-addr", LONG + ":50051"], {}),
    "-ready-rpc-header": (["-ready-rpc-header", "x-long: " + LONG], {}),
}


@pytest.mark.parametrize("name", list(TOO_LONG))
def test_a_value_longer_than_the_gate_carries_is_refused_at_start(bindir, name):
    """Cut to the gate protocol's 4,096 bytes it would name another service, address or header:
    exit 1 at once, one error line naming where it came from and the limit, no child."""
    args, extra = TOO_LONG[name]
    with pid1(bindir, args, ["sh", "-c", "echo STARTED; exec sleep 30"], env=dict(os.environ, **extra)) as g:
        try:
            g.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                started = g.out.next(time.monotonic() + 1)
            except (TimeoutError, EOFError):
                started = "nothing"
        else:
            started = None
        if started is not None:
            pytest.fail(f"grpc-init still running 3s after its start; the child printed {started!r}")
        code = g.exit_code(1)
        child = g.out.rest(time.monotonic() + 5)
    errors = [line for line in g.lines if line.startswith("[grpc-init] error: ")]
    assert len(errors) == 1, g.lines
    assert name in errors[0], errors
    assert any(limit in errors[0] for limit in ("4096", "4,096", "4 KiB")), errors
    assert "STARTED" not in child, child
    assert code == 1, g.lines
