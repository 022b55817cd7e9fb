"""The readiness gate (-ready-addr): grpc-init probes its child's health service until it reports
SERVING, then says so (a log line, -ready-file, READY=1 on NOTIFY_SOCKET) and probes no more."""
import os
import platform
import socket
import subprocess
import sys
import time

import pytest

from conftest import PEERS, LineReader
from test_supervisor import MODES, argv, supervisor_pid


def start(bindir, mode, tmp_path, gate, server_args, env=None):
    """grpc-init with the gate flags in `gate`, supervising a grpcio server on a unix socket.
    Returns the process and line readers of its stdout (the server's) and stderr (grpc-init's)."""
    sock = tmp_path / "server.sock"
    args = ["-ready-addr", f"unix://{sock}", "-ready-interval", "50ms", *gate, "--",
            sys.executable, str(PEERS / "pyserver.py"), "--listen", f"unix:{sock}", *server_args]
    proc = subprocess.Popen(argv(bindir, mode, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, LineReader(proc), LineReader(proc, proc.stderr)


def await_line(reader, prefix, timeout=20):
    """The first line of `reader` that starts with `prefix` (the file and the notification come
    before grpc-init's ready line, so they can be checked once it is read)."""
    deadline = time.monotonic() + timeout
    while True:
        line = reader.next(deadline)
        if line.startswith(prefix):
            return line


def await_idle_forever(pid, timeout=10):
    """grpc-init blocked in poll(2) with no timeout and no probe in flight (its only child the
    server): nothing but a signal wakes it, so no further probe can start. /proc/PID/syscall
    shows the poll (x86_64: syscall 7, timeout -1)."""
    if platform.machine() != "x86_64":
        pytest.skip("reads x86_64 syscall numbers")

    def polling_forever():
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        return fields[:1] == ["7"] and fields[3] == "0xffffffff"

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if polling_forever():
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
            if len(children) == 1 and polling_forever():
                return True
        time.sleep(0.005)  # states the kernel does not signal; bounded
    return False


def stop(proc, mode):
    """SIGTERM to grpc-init (under unshare, its child), which forwards it to the server."""
    if proc.poll() is None:
        os.kill(supervisor_pid(proc, mode), 15)
    _, stderr = proc.communicate(timeout=15)
    return stderr


@pytest.mark.parametrize("mode", MODES)
def test_ready_only_once_the_child_serves(bindir, mode, tmp_path):
    ready = tmp_path / "ready"
    proc, lines, log = start(bindir, mode, tmp_path, ["-ready-file", str(ready)], ["--serving-after", "0.5"])
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        serving_line = lines.next(time.monotonic() + 20)
        assert serving_line.startswith("SERVING NOW ")
        ready_line = await_line(log, "[grpc-init] ready: ")
        assert f"unix://{tmp_path / 'server.sock'} reports SERVING" in ready_line
        assert ready.read_text() == "SERVING\n"
        # Not before the server said SERVING (both are wall-clock times of this machine).
        assert os.stat(ready).st_mtime >= float(serving_line.split()[2]) - 0.01
        # The gate probes no more: grpc-init sleeps with no timeout, its only child the server.
        assert await_idle_forever(supervisor_pid(proc, mode))
    finally:
        stderr = stop(proc, mode)
    assert "[grpc-init] ready: " not in stderr, "said once"
    assert proc.returncode in (0, 143), stderr  # the server's own answer to SIGTERM


def test_ready_notifies_the_service_manager_and_hides_its_socket_from_the_child(bindir, tmp_path):
    notify = tmp_path / "notify.sock"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(notify))
    manager.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify))
    proc, lines, log = start(bindir, "subreaper", tmp_path, [], ["--serving-after", "0.2"], env=env)
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        await_line(log, "[grpc-init] ready: ")
        # READY=1 was sent before the line was written: it is already waiting.
        manager.setblocking(False)
        message = manager.recv(4096).decode()
        assert message.splitlines()[0] == "READY=1", message
        supervisor = supervisor_pid(proc, "subreaper")
        with open(f"/proc/{supervisor}/task/{supervisor}/children") as f:
            children = f.read().split()
        assert len(children) == 1, "only the server: no probe runs once ready"
        with open(f"/proc/{children[0]}/environ", "rb") as f:
            assert b"NOTIFY_SOCKET=" not in f.read(), "the child does not get NOTIFY_SOCKET"
    finally:
        stop(proc, "subreaper")
        manager.close()


def test_a_child_that_never_serves_is_still_supervised(bindir, tmp_path):
    ready = tmp_path / "ready"
    proc, lines, log = start(bindir, "pid1", tmp_path, ["-ready-file", str(ready), "-v"], ["--status", "NOT_SERVING"])
    assert lines.next(time.monotonic() + 20).startswith("READY ")
    # -v names why it is not ready yet, once per reason.
    deadline = time.monotonic() + 20
    while 'responded with "NOT_SERVING"' not in (line := log.next(deadline)):
        pass
    assert line.startswith("[grpc-init] not ready yet ("), line
    rest = stop(proc, "pid1")
    assert not ready.exists()
    assert "ready:" not in rest
    assert proc.returncode in (0, 143), rest


def test_a_ready_file_left_from_an_earlier_run_is_removed_at_start(bindir, tmp_path):
    """An emptyDir outlives a container restart: the file the last run made must not claim
    readiness this run has not seen."""
    ready = tmp_path / "ready"
    ready.write_text("SERVING\n")
    proc, lines, log = start(bindir, "subreaper", tmp_path, ["-ready-file", str(ready), "-v"], ["--status", "NOT_SERVING"])
    try:
        assert await_line(log, "[grpc-init] spawned ")  # the file is removed before the child starts
        assert not ready.exists()
        await_line(log, "[grpc-init] not ready yet (")
        assert not ready.exists()
    finally:
        stop(proc, "subreaper")


@pytest.mark.parametrize("args,message", [
    (["-ready-file", "/tmp/x"], "-ready-file needs -ready-addr"),
    (["-ready-service", "svc"], "-ready-service needs -ready-addr"),
    (["-ready-addr", "localhost:1", "-ready-interval", "0s"], "-ready-interval must be greater than zero (specified: 0s)"),
    (["-ready-addr", "localhost"], "invalid -ready-addr: address localhost: missing port in address"),
])
def test_gate_flag_errors(bindir, args, message):
    out = subprocess.run([str(bindir / "grpc-init"), *args, "--", "true"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "[grpc-init] error: " + message


def test_ready_service_is_the_one_checked(bindir, tmp_path):
    """The server as a whole says NOT_SERVING; the named service is SERVING, and the gate asks for it."""
    ready = tmp_path / "ready"
    proc, lines, log = start(bindir, "subreaper", tmp_path, ["-ready-file", str(ready), "-ready-service", "svc"],
                             ["--status", "NOT_SERVING", "--services", "svc=SERVING"])
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        assert '(service "svc") reports SERVING' in await_line(log, "[grpc-init] ready: ")
        assert ready.read_text() == "SERVING\n"
    finally:
        stop(proc, "subreaper")
