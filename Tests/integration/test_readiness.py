"""The readiness gate: a health agent (a process of its own) finds the child's gRPC port from
/proc, or is told it (-ready-addr), watches grpc.health.v1.Health there over whatever transport
it needs, and the supervisor tells the world: log lines, -ready-file, READY=1 and STATUS= on
NOTIFY_SOCKET. Against grpcio and grpc-go children, as PID 1 and as subreaper."""
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GO_SERVER, PEERS, LineReader
from peers import free_port, workload_api
from test_supervisor import MODES, argv, supervisor_pid

AGENT = "grpc-init-agent"


def launch(bindir, mode, gate, command, env=None, stdin=None):
    """grpc-init with the gate flags in `gate` supervising `command`. Returns the process and
    line readers of its stdout (the child's) and stderr (grpc-init's)."""
    proc = subprocess.Popen(argv(bindir, mode, [*gate, "--", *command]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=stdin, env=env)
    return proc, LineReader(proc), LineReader(proc, proc.stderr)


def go_server(*args, listen="127.0.0.1:0"):
    if listen.startswith("unix:"):
        return [str(GO_SERVER), "-network", "unix", "-addr", listen[5:], *args]
    return [str(GO_SERVER), "-addr", listen, *args]


def py_server(*args, listen="127.0.0.1:0"):
    return [sys.executable, str(PEERS / "pyserver.py"), "--listen", listen, *args]


def await_line(reader, prefix, timeout=20):
    """The first line of `reader` that starts with `prefix` (the file and the notification come
    before grpc-init's line, so they can be checked once it is read)."""
    return reader.until(prefix, time.monotonic() + timeout)


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def command_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return ""


def agent_of(supervisor, timeout=10):
    """The pid of the supervisor's health agent, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agents = [c for c in children(supervisor) if command_of(c) == AGENT]
        if agents:
            return agents[0]
        time.sleep(0.005)  # process start-up, which nothing signals; bounded
    raise TimeoutError("no health agent")


def polling_forever(pid):
    """Blocked in poll(2) or ppoll with no timeout (x86_64: poll is 7, timeout -1)."""
    with open(f"/proc/{pid}/syscall") as f:
        fields = f.read().split()
    return fields[:1] == ["7"] and fields[3] == "0xffffffff"


def await_idle_forever(pid, timeout=10):
    """`pid` asleep in poll(2) with no timeout: nothing but a signal or a peer wakes it."""
    if platform.machine() != "x86_64":
        pytest.skip("reads x86_64 syscall numbers")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if polling_forever(pid):
            return True
        time.sleep(0.005)  # states the kernel does not signal; bounded
    return False


def wakeups(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def rss_kib(pid):
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def stop(proc, mode):
    """SIGTERM to grpc-init (under unshare, its child), which forwards it to the server."""
    if proc.poll() is None:
        os.kill(supervisor_pid(proc, mode), signal.SIGTERM)
    _, stderr = proc.communicate(timeout=15)
    return stderr.decode()


SERVERS = {
    ("go", "tcp4", "pid1"): go_server(),
    ("go", "tcp6", "subreaper"): go_server(listen="[::1]:0"),
    ("go", "wildcard", "pid1"): go_server(listen=":0"),
    ("python", "tcp4", "subreaper"): py_server(),
    ("python", "tcp6", "pid1"): py_server(listen="[::1]:0"),
}


@pytest.mark.parametrize("kind,network,mode", list(SERVERS))
def test_discovered_with_no_flags(bindir, tmp_path, kind, network, mode):
    ready = tmp_path / "ready"
    proc, lines, log = launch(bindir, mode, ["-ready-file", str(ready)], SERVERS[kind, network, mode])
    try:
        port = lines.until("READY ", time.monotonic() + 20).split()[-1].rsplit(":", 1)[-1]
        found = await_line(log, "[grpc-init] health: found the gRPC server at ")
        # A wildcard listener is reached over loopback: Go's ":0" listens on [::] (dual stack).
        hosts = {"tcp4": ["127.0.0.1"], "wildcard": ["127.0.0.1", "[::1]"], "tcp6": ["[::1]"]}[network]
        host = next((h for h in hosts if f" at {h}:{port} " in found), None)
        assert host and found.endswith(", plaintext"), found
        ready_line = await_line(log, "[grpc-init] ready: ")
        assert ready_line.startswith(f"[grpc-init] ready: {host}:{port} reports SERVING, "), ready_line
        assert ready.read_text() == "SERVING\n"
    finally:
        rest = stop(proc, mode)
    assert proc.returncode in (0, 143), rest


@pytest.mark.parametrize("kind", ["go", "python"])
def test_discovered_on_a_unix_socket(bindir, tmp_path, kind):
    sock = tmp_path / "server.sock"
    command = (go_server if kind == "go" else py_server)(listen=f"unix:{sock}")
    proc, lines, log = launch(bindir, "pid1", [], command)
    try:
        assert await_line(log, "[grpc-init] ready: ").startswith(f"[grpc-init] ready: unix:{sock} reports SERVING")
    finally:
        stop(proc, "pid1")


def test_an_http1_port_first_and_a_grandchild_that_serves_grpc_later(bindir, tmp_path):
    """A shell script starts a metrics server (HTTP/1), then the gRPC server, neither of them
    the supervisor's child: the HTTP/1 port is tried once and remembered, the gRPC one found."""
    http_port = free_port()
    script = (f"{sys.executable} -m http.server -b 127.0.0.1 {http_port} >/dev/null 2>&1 & "
              f"while ! [ -e {tmp_path}/go ]; do sleep 0.05; done; {' '.join(go_server())}; true")
    proc, lines, log = launch(bindir, "subreaper", ["-v"], ["sh", "-c", script])
    try:
        line = await_line(log, f"[grpc-init] health: 127.0.0.1:{http_port} ")
        assert "is not a gRPC server we can check: " in line and "does not speak HTTP/2" in line, line
        (tmp_path / "go").touch()
        port = lines.until("READY ", time.monotonic() + 20).rsplit(":", 1)[-1]
        assert await_line(log, "[grpc-init] ready: ").startswith(f"[grpc-init] ready: 127.0.0.1:{port} reports SERVING")
    finally:
        rest = stop(proc, "subreaper")
    assert rest.count(f"127.0.0.1:{http_port} (pid") <= 1, "the HTTP/1 port is tried once"


@pytest.mark.parametrize("kind", ["go", "python"])
def test_a_tls_only_server_is_gated_with_no_flags(bindir, pki, kind):
    cert, key = pki.server_ecdsa
    command = go_server("-tls-cert", str(cert), "-tls-key", str(key)) if kind == "go" else \
        py_server("--tls-cert", str(cert), "--tls-key", str(key))
    proc, lines, log = launch(bindir, "pid1", [], command)
    try:
        found = await_line(log, "[grpc-init] health: found the gRPC server at ")
        assert "TLS, certificate not verified (the socket is the child's" in found, found
        await_line(log, "[grpc-init] ready: ")
    finally:
        stop(proc, "pid1")


def test_mtls_needs_the_flags_and_says_so(bindir, pki):
    cert, key = pki.server_rsa
    client_cert, client_key = pki.client_rsa_pkcs8
    command = go_server("-tls-cert", str(cert), "-tls-key", str(key), "-tls-client-ca", str(pki.ca))
    proc, lines, log = launch(bindir, "subreaper", ["-v"], command)
    try:
        reason = await_line(log, "[grpc-init] not ready yet: no gRPC server among")
        assert "requires a client certificate" in reason and "-ready-tls-client-cert" in reason, reason
    finally:
        stop(proc, "subreaper")
    gate = ["-ready-tls", "-ready-tls-ca-cert", str(pki.ca), "-ready-tls-server-name", "localhost",
            "-ready-tls-client-cert", str(client_cert), "-ready-tls-client-key", str(client_key)]
    proc, lines, log = launch(bindir, "subreaper", gate, command)
    try:
        assert ", TLS" in await_line(log, "[grpc-init] health: found the gRPC server at ")
        await_line(log, "[grpc-init] ready: ")
    finally:
        stop(proc, "subreaper")


def test_a_server_without_watch_is_checked_every_interval(bindir):
    proc, lines, log = launch(bindir, "pid1", ["-v", "-ready-interval", "50ms"], go_server("-no-watch", "-serving-after", "300ms"))
    try:
        assert "has no Health/Watch; a Check every 50ms" in await_line(log, "[grpc-init] health: 127.0.0.1:")
        flipped = lines.until("SERVING NOW ", time.monotonic() + 20)
        await_line(log, "[grpc-init] ready: ")
        seen = time.time_ns()
        assert seen - int(flipped.split()[2]) < 1e9, "within an interval, and some slack"
    finally:
        stop(proc, "pid1")


@pytest.mark.parametrize("mode", MODES)
def test_every_transition_after_ready(bindir, tmp_path, mode):
    """SERVING -> NOT_SERVING -> SERVING: a line each, the file removed and made again, STATUS=
    on NOTIFY_SOCKET, READY=1 only once."""
    ready = tmp_path / "ready"
    notify = tmp_path / "notify.sock"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(notify))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify))
    proc, lines, log = launch(bindir, mode, ["-ready-file", str(ready)], go_server("-control"), env=env, stdin=subprocess.PIPE)
    try:
        await_line(log, "[grpc-init] ready: ")
        assert ready.exists()
        manager.settimeout(10)
        assert manager.recv(4096).decode().startswith("READY=1\nSTATUS=")
        proc.stdin.write(b"SET - NOT_SERVING\n")
        proc.stdin.flush()
        assert await_line(log, "[grpc-init] health: ") == "[grpc-init] health: NOT_SERVING (was SERVING)"
        assert not ready.exists()
        assert manager.recv(4096).decode() == "STATUS=not ready: NOT_SERVING"
        proc.stdin.write(b"SET - SERVING\n")
        proc.stdin.flush()
        assert await_line(log, "[grpc-init] health: ") == "[grpc-init] health: SERVING (was NOT_SERVING)"
        assert ready.read_text() == "SERVING\n"
        assert manager.recv(4096).decode().startswith("STATUS=127.0.0.1:")
        # Idle after ready: neither the supervisor nor the agent wakes (Watch is pushed).
        supervisor = supervisor_pid(proc, mode)
        agent = agent_of(supervisor)
        assert await_idle_forever(supervisor) and await_idle_forever(agent)
        before = wakeups(supervisor), wakeups(agent)
        time.sleep(1)  # a bounded observation window: nothing can be awaited that should not happen
        assert (wakeups(supervisor), wakeups(agent)) == before
        # The child does not see NOTIFY_SOCKET: the gate says READY=1, not the server.
        server = [c for c in children(supervisor) if c != agent][0]
        assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{server}/environ").read_bytes()
    finally:
        proc.stdin.close()
        proc.stdin = None
        rest = stop(proc, mode)
        manager.close()
    assert "ready: " not in rest, "READY once"


def test_the_agent_killed_is_started_again_and_the_child_is_untouched(bindir, tmp_path):
    proc, lines, log = launch(bindir, "subreaper", ["-v"], go_server("-control"), stdin=subprocess.PIPE)
    try:
        await_line(log, "[grpc-init] ready: ")
        first = agent_of(proc.pid)
        server = [c for c in children(proc.pid) if c != first][0]
        os.kill(first, signal.SIGKILL)
        warning = await_line(log, "[grpc-init] warning: health agent")
        assert warning.startswith(f"[grpc-init] warning: health agent (pid {first}) killed by SIGKILL; starting it again now"), warning
        await_line(log, "[grpc-init] health agent started as pid ")
        second = agent_of(proc.pid)
        assert second != first
        assert server in children(proc.pid), "the server runs on"
        # The new agent watches: a change is seen.
        proc.stdin.write(b"SET - NOT_SERVING\n")
        proc.stdin.flush()
        assert await_line(log, "[grpc-init] health: NOT_SERVING") == "[grpc-init] health: NOT_SERVING (was SERVING)"
    finally:
        proc.stdin.close()
        proc.stdin = None
        stop(proc, "subreaper")
    assert proc.returncode in (0, 143)


def test_sigterm_is_forwarded_at_once_while_the_agent_is_stuck_in_a_handshake(bindir):
    """The child accepts and never answers: the agent waits in its TLS handshake (a minute
    allowed); SIGTERM still reaches the child at once."""
    command = [sys.executable, str(PEERS / "rawpeer.py"), "--mode", "stall"]
    proc, lines, log = launch(bindir, "pid1", ["-ready-tls", "-ready-tls-no-verify", "-ready-connect-timeout", "60s"], command)
    try:
        lines.until("READY ", time.monotonic() + 20)
        supervisor = supervisor_pid(proc, "pid1")
        agent = agent_of(supervisor)
        # The agent's socket to the child is open: it is mid-handshake.
        deadline = time.monotonic() + 10
        while not any(os.readlink(f"/proc/{agent}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{agent}/fd")
                      if fd not in ("0", "1", "2")):
            assert time.monotonic() < deadline
            time.sleep(0.005)  # a connect the kernel does not signal to us; bounded
        start = time.monotonic()
        os.kill(supervisor, signal.SIGTERM)
        proc.communicate(timeout=15)
        assert time.monotonic() - start < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143


def test_ready_timeout_stops_a_child_that_never_serves(bindir, tmp_path):
    proc, lines, log = launch(bindir, "pid1", ["-ready-timeout", "700ms"], go_server("-status", "NOT_SERVING"))
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 124, stderr
    line = [l for l in stderr.decode().splitlines() if "-ready-timeout" in l][0]
    assert line == "[grpc-init] error: not ready within 700ms (-ready-timeout): NOT_SERVING; stopping the child", line


def test_ready_addr_names_the_target(bindir, tmp_path):
    sock = tmp_path / "server.sock"
    proc, lines, log = launch(bindir, "pid1", ["-ready-addr", f"unix://{sock}", "-ready-service", "svc"],
                              py_server("--status", "NOT_SERVING", "--services", "svc=SERVING", listen=f"unix:{sock}"))
    try:
        line = await_line(log, "[grpc-init] ready: ")
        assert line.startswith(f'[grpc-init] ready: unix://{sock} (service "svc") reports SERVING'), line
    finally:
        stop(proc, "pid1")


def test_a_child_that_never_serves_is_still_supervised(bindir, tmp_path):
    ready = tmp_path / "ready"
    proc, lines, log = launch(bindir, "pid1", ["-ready-file", str(ready), "-v"], py_server("--status", "NOT_SERVING"))
    assert await_line(log, "[grpc-init] not ready yet: NOT_SERVING") == "[grpc-init] not ready yet: NOT_SERVING"
    rest = stop(proc, "pid1")
    assert not ready.exists()
    assert "ready:" not in rest
    assert proc.returncode in (0, 143), rest


def test_a_ready_file_left_from_an_earlier_run_is_removed_at_start(bindir, tmp_path):
    """An emptyDir outlives a container restart: the file the last run made must not claim
    readiness this run has not seen."""
    ready = tmp_path / "ready"
    ready.write_text("SERVING\n")
    proc, lines, log = launch(bindir, "subreaper", ["-ready-file", str(ready), "-v"], py_server("--status", "NOT_SERVING"))
    try:
        await_line(log, "[grpc-init] spawned ")  # the file is removed before the child starts
        assert not ready.exists()
        await_line(log, "[grpc-init] not ready yet: NOT_SERVING")
        assert not ready.exists()
    finally:
        stop(proc, "subreaper")


def test_ready_false_runs_no_agent_and_leaves_notify_socket_to_the_child(bindir, tmp_path):
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    proc, lines, log = launch(bindir, "subreaper", ["-ready=false"], ["sh", "-c", "echo $NOTIFY_SOCKET; sleep 100"], env=env)
    try:
        assert lines.next(time.monotonic() + 10) == str(tmp_path / "notify.sock")
        assert [command_of(c) for c in children(proc.pid)] == ["sh"]
    finally:
        stop(proc, "subreaper")


@pytest.mark.parametrize("args,message", [
    (["-ready=false", "-ready-file", "/tmp/x"], "-ready-file has no effect with -ready=false"),
    (["-ready-addr", "localhost:1", "-ready-interval", "0s"], "-ready-interval must be greater than zero (specified: 0s)"),
    (["-ready-rpc-timeout", "0s"], "-ready-rpc-timeout must be greater than zero (specified: 0s)"),
    (["-ready-timeout", "-1s"], "-ready-timeout must not be negative (specified: -1s)"),
    (["-ready-addr", "localhost"], "invalid -ready-addr: address localhost: missing port in address"),
    (["-ready-tls-no-verify"], "specified -ready-tls-no-verify without specifying -ready-tls"),
    (["-ready-tls", "-ready-tls-client-cert", "c.pem"], "specified -ready-tls-client-cert without specifying -ready-tls-client-key"),
    (["-ready-tls", "-ready-spiffe"], "-ready-tls and -ready-spiffe are mutually incompatible"),
    (["-ready-rpc-header", "nocolon"], "invalid value \"nocolon\" for flag -ready-rpc-header: invalid RPC header, expected 'key: value', got \"nocolon\""),
    (["-ready=maybe"], "invalid boolean value \"maybe\" for -ready: parse error"),
])
def test_gate_flag_errors(bindir, args, message):
    out = subprocess.run([str(bindir / "grpc-init"), *args, "--", "true"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "[grpc-init] error: " + message


def test_gate_variables(bindir):
    env = dict(os.environ, GRPC_INIT_READY="false", GRPC_INIT_READY_TIMEOUT="1s")
    out = subprocess.run([str(bindir / "grpc-init"), "--", "true"], capture_output=True, text=True, timeout=10, env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "[grpc-init] error: GRPC_INIT_READY_TIMEOUT has no effect with GRPC_INIT_READY=false"


def test_rpc_headers_reach_the_server(bindir):
    env = dict(os.environ, GRPC_INIT_READY_RPC_HEADER="x-one: 1, x-two: two words")
    proc, lines, log = launch(bindir, "subreaper", [], go_server("-echo-headers"), env=env)
    try:
        seen = set()
        deadline = time.monotonic() + 20
        while not {"HEADER x-one=1", "HEADER x-two=two words"} <= seen:
            seen.add(lines.next(deadline))
    finally:
        stop(proc, "subreaper")


def test_ready_spiffe_presents_the_rotated_svid_on_new_connections(bindir, pki, tmp_path):
    """The agent keeps its Workload API stream open: an SVID rotated while it runs is the one
    its next connection presents (the server's GOAWAY after a second forces one)."""
    server_cert, server_key = pki.spiffe_server
    with workload_api(pki, tmp_path, rotate_to=pki.spiffe_probe_rotated) as (workload, endpoint):
        env = dict(os.environ, SPIFFE_ENDPOINT_SOCKET=endpoint)
        proc, lines, log = launch(bindir, "subreaper", ["-v", "-ready-spiffe"],
                                  go_server("-tls-cert", str(server_cert), "-tls-key", str(server_key), "-tls-client-ca",
                                            str(pki.spiffe_ca), "-print-client-cert", "-max-connection-age", "1s"), env=env)
        try:
            assert ", SPIFFE mTLS" in await_line(log, "[grpc-init] health: found the gRPC server at ")
            await_line(log, "[grpc-init] ready: ")
            assert lines.until("CLIENT ", time.monotonic() + 10) == "CLIENT probe"
            workload.stdin.write(b"ROTATE\n")
            workload.stdin.flush()
            assert workload.lines.until("ROTATED ", time.monotonic() + 10) == "ROTATED 1", "the agent's stream was open"
            lines.until("CLIENT probe-rotated", time.monotonic() + 20)
            deadline = time.monotonic() + 20
            while (line := log.next(deadline)) != "[grpc-init] health: rotated to an X.509-SVID for spiffe://example.org/probe":
                assert "was SERVING" not in line, "no flapping across the reconnections"
        finally:
            stop(proc, "subreaper")


def test_idle_after_ready_both_processes_shrink_and_still_work(bindir):
    """Once ready and idle, the supervisor and the agent release their code and the data pages
    they only read (they fault back in from the page cache as they were); afterwards both still
    do their work: a probe is answered, SIGTERM is forwarded."""
    import http.client
    port = free_port()
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{port}"], go_server())
    try:
        await_line(log, "[grpc-init] ready: ")
        agent = agent_of(proc.pid)
        assert await_idle_forever(proc.pid) and await_idle_forever(agent)
        assert rss_kib(proc.pid) < 1024, f"supervisor {rss_kib(proc.pid)} KiB"
        assert rss_kib(agent) < 1536, f"agent {rss_kib(agent)} KiB"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        stop(proc, "subreaper")
    assert proc.returncode == 143, "SIGTERM forwarded: the server's own status"
