"""The supervisor's system calls that fail: each failure is said once, with the call, what it was
on and its errno, and none turns into something else (a SIGPIPE of grpc-init's own forwarded to
the child, a line per flap of the server). Every wait has a deadline."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import BIN, GO_SERVER, LineReader
from test_readiness import agent_of


def state_of(pid):
    """The process's state letter from /proc/PID/stat (R, S, T, Z, ...), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def await_state(pid, letters, timeout=5):
    deadline = time.monotonic() + timeout
    while state_of(pid) not in letters:
        if time.monotonic() > deadline:
            pytest.fail(f"pid {pid} not in state {letters} within {timeout}s (it is {state_of(pid)})")
        time.sleep(0.002)  # a state change, which nothing signals; bounded


def can_mount_read_only():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "mount -t tmpfs -o ro tmpfs /mnt"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("where", ["read-only", "missing"])
def test_a_ready_file_that_cannot_be_written_is_said_once(tmp_path, where):
    """-ready-file in a read-only directory (or one that does not exist), and a server that
    turns NOT_SERVING and SERVING again twice: one warning names the file, the call that failed
    and why; the flaps say nothing more about it."""
    directory = tmp_path / "ready"
    ready = directory / "ready"
    argv = [str(BIN), "-ready-file", str(ready), "--", str(GO_SERVER), "-addr", "127.0.0.1:0", "-control"]
    if where == "read-only":
        if not can_mount_read_only():
            pytest.skip("needs root and unshare --mount for a read-only tmpfs")
        directory.mkdir()
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                f'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(directory), *argv]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = LineReader(proc, proc.stderr)
    lines = []

    def until(prefix, timeout=20):
        deadline = time.monotonic() + timeout
        while not (line := log.next(deadline)).startswith(prefix):
            lines.append(line)
        lines.append(line)
        return line

    def tell(status):
        proc.stdin.write(f"SET - {status}\n".encode())
        proc.stdin.flush()

    try:
        until("[grpc-init] ready: ")
        for _ in range(2):
            tell("NOT_SERVING")
            assert until("[grpc-init] health: ").endswith("(was SERVING)"), lines
            tell("SERVING")
            until("[grpc-init] health: SERVING")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        lines += log.rest(time.monotonic() + 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdin.close()
        proc.stderr.close()
    about = [line for line in lines if str(ready) in line]
    assert len(about) == 1, lines
    assert about[0].startswith("[grpc-init] warning: "), about
    why = "Read-only file system" if where == "read-only" else "No such file or directory"
    assert why in about[0], about
    assert any(f"{call}: {why}" in about[0] for call in ("open", "unlink")), about


def test_a_drain_told_to_an_agent_that_died_raises_no_signal_for_the_child():
    """SIGTERM with -drain-delay while the health agent has died and is not reaped yet: the drain
    written to its control pipe fails (EPIPE), and the SIGPIPE that write raised is grpc-init's
    own, not one to forward: the child gets SIGTERM after the drain and nothing before it."""
    proc = subprocess.Popen([str(BIN), "-v", "-drain-delay", "1s", "--", "sleep", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = LineReader(proc, proc.stderr)
    try:
        agent = agent_of(proc.pid)
        # grpc-init stopped, the agent is killed and becomes a zombie only grpc-init can reap;
        # SIGTERM then comes before SIGCHLD in grpc-init's signalfd (lower numbers first).
        os.kill(proc.pid, signal.SIGSTOP)
        await_state(proc.pid, "T")
        os.kill(agent, signal.SIGKILL)
        await_state(agent, "Z")
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGCONT)
        code = proc.wait(timeout=10)
        lines = log.rest(time.monotonic() + 5)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()
    assert not [line for line in lines if "SIGPIPE" in line], lines
    assert any(line.startswith("[grpc-init] draining") for line in lines), lines
    assert code == 128 + signal.SIGTERM, lines


# Without /proc in its mount namespace, grpc-init runs its agent by the path it was started by
# (AT_EXECFN). Started through a descriptor (fexecve: execveat with AT_EMPTY_PATH), that path
# is /dev/fd/N, which needs /proc: the agent's exec fails every time.
NO_PROC_FEXECVE = r"""
import os, subprocess, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
subprocess.run(["umount", "-l", "/proc"], check=True)
os.execve(fd, sys.argv[1:], os.environ)
"""


def test_an_agent_that_cannot_be_run_says_why_and_raises_no_signal_for_the_child():
    """The agent's exec fails (ENOENT): each death says the call and the errno, and the
    configuration written to the dead agent's pipe (EPIPE) raises a SIGPIPE that is grpc-init's
    own: the child is not sent it, and lives until SIGTERM."""
    if not can_mount_read_only():
        pytest.skip("needs root and unshare --mount")
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-S", "-c", NO_PROC_FEXECVE,
            str(BIN), "-v", "--", "sleep", "60"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = LineReader(proc, proc.stderr)
    lines = []
    try:
        deadline = time.monotonic() + 10
        deaths = []
        while len(deaths) < 4:
            try:
                line = log.next(deadline)
            except (TimeoutError, EOFError) as e:
                pytest.fail(f"{e}; grpc-init {proc.poll()}; its lines: {lines}")
            lines.append(line)
            if line.startswith("[grpc-init] warning: health agent (pid "):
                deaths.append(line)
        assert proc.poll() is None, lines
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=10)
        lines += log.rest(time.monotonic() + 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()
    assert not [line for line in lines if "SIGPIPE" in line or "cannot tell it" in line], lines
    assert all("could not run /dev/fd/" in line and ": No such file or directory;" in line for line in deaths), deaths
    assert code == 128 + signal.SIGTERM, lines
