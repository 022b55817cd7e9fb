"""The readiness gate (-ready-addr): grpc-init probes its child's health service until it reports
SERVING, then says so (a log line, -ready-file, READY=1 on NOTIFY_SOCKET) and probes no more."""
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from conftest import PEERS, LineReader
from test_supervisor import MODES, argv, supervisor_pid


def start(bindir, mode, tmp_path, gate, server_args, env=None):
    """grpc-init with the gate flags in `gate`, supervising a grpcio server on a unix socket."""
    sock = tmp_path / "server.sock"
    args = ["-ready-addr", f"unix://{sock}", "-ready-interval", "50ms", *gate, "--",
            sys.executable, str(PEERS / "pyserver.py"), "--listen", f"unix:{sock}", *server_args]
    proc = subprocess.Popen(argv(bindir, mode, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, LineReader(proc)


def await_file(path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.01)
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
    proc, lines = start(bindir, mode, tmp_path, ["-ready-file", str(ready)], ["--serving-after", "0.5"])
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        serving_line = lines.next(time.monotonic() + 20)
        assert serving_line.startswith("SERVING NOW ")
        assert await_file(ready), "the ready file appears"
        # Not before the server said SERVING (both are wall-clock times of this machine).
        assert os.stat(ready).st_mtime >= float(serving_line.split()[2]) - 0.01
        assert ready.read_text() == "SERVING\n"
        # The gate probes no more: grpc-init's only child is the server.
        supervisor = supervisor_pid(proc, mode)
        time.sleep(0.2)  # several intervals: an attempt would be visible
        with open(f"/proc/{supervisor}/task/{supervisor}/children") as f:
            assert len(f.read().split()) == 1
    finally:
        stderr = stop(proc, mode)
    ready_lines = [line for line in stderr.splitlines() if line.startswith("[grpc-init] ready: ")]
    assert len(ready_lines) == 1, stderr
    assert f"unix://{tmp_path / 'server.sock'} reports SERVING" in ready_lines[0]
    assert proc.returncode in (0, 143), stderr  # the server's own answer to SIGTERM


def test_ready_notifies_the_service_manager_and_hides_its_socket_from_the_child(bindir, tmp_path):
    notify = tmp_path / "notify.sock"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(notify))
    manager.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify))
    proc, lines = start(bindir, "subreaper", tmp_path, [], ["--serving-after", "0.2"], env=env)
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
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
    proc, lines = start(bindir, "pid1", tmp_path, ["-ready-file", str(ready), "-v"], ["--status", "NOT_SERVING"])
    assert lines.next(time.monotonic() + 20).startswith("READY ")
    deadline = time.monotonic() + 10
    stderr_lines = []
    # -v names why it is not ready yet, once per reason.
    while time.monotonic() < deadline and not any("NOT_SERVING" in line for line in stderr_lines):
        if select.select([proc.stderr], [], [], 0.1)[0]:
            stderr_lines.append(proc.stderr.readline())
    assert any('not ready yet' in line and 'responded with "NOT_SERVING"' in line for line in stderr_lines), stderr_lines
    rest = stop(proc, "pid1")
    assert not ready.exists()
    assert "ready:" not in rest
    assert proc.returncode in (0, 143), rest


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
    proc, lines = start(bindir, "subreaper", tmp_path, ["-ready-file", str(ready), "-ready-service", "svc"],
                        ["--status", "NOT_SERVING", "--services", "svc=SERVING"])
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        assert await_file(ready)
    finally:
        stderr = stop(proc, "subreaper")
    assert 'reports SERVING' in stderr and '(service "svc")' in stderr, stderr
