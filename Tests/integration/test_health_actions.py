"""What grpc-init does with what it knows of the server's health: the probe with no flags asks
the agent; -exit-unhealthy-after and -exit-unresponsive-after end a container whose server went
bad; several services; sd_notify's WATCHDOG=1 and STOPPING=1; socket activation; how soon a
starting server is seen."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import PEERS, LineReader
from peers import free_port, read_to_end
from test_health_endpoint import get
from test_readiness import AGENT, agent_of, children, command_of, go_server, launch, py_server, stop
from test_supervisor import supervisor_pid


class ending:
    """grpc-init expected to end by itself: killed if the test fails first."""

    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        return self.proc

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def probe_inside(bindir, proc, *args, mode="pid1", timeout=15):
    """grpc_health_probe run in grpc-init's PID namespace, as `podman exec` or kubelet runs it."""
    pid = supervisor_pid(proc, mode)
    prefix = ["nsenter", "-t", str(pid), "-p"] if mode == "pid1" else []
    return subprocess.run([*prefix, str(bindir / "grpc_health_probe"), *args], capture_output=True, text=True, timeout=timeout)


def tls_child(pki, client_ca=None, kind="go"):
    cert, key = pki.server_ecdsa
    if kind == "python":
        return py_server("--tls-cert", str(cert), "--tls-key", str(key), *(["--tls-client-ca", str(client_ca)] if client_ca else []))
    return go_server("-tls-cert", str(cert), "-tls-key", str(key), *(["-tls-client-ca", str(client_ca)] if client_ca else []))


def controlled(kind, *services):
    """A child whose statuses the test sets: "SET <service|-> <STATUS>" lines on its stdin."""
    if kind == "python":
        return py_server("--control", *(["--services", ",".join(services)] if services else []))
    return go_server("-control", *(["-services", ",".join(services)] if services else []))


@pytest.mark.parametrize("kind", ["go", "python"])
def test_the_probe_with_no_flags_asks_the_agent_for_a_tls_child(bindir, pki, kind):
    """A TLS-only child found with no flags: the probe needs none either, and sees the drain."""
    proc, _, log = launch(bindir, "pid1", ["-drain-delay", "5s"], tls_child(pki, kind=kind))
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        r = probe_inside(bindir, proc)
        assert (r.returncode, r.stderr) == (0, "status: SERVING\n")
        r = probe_inside(bindir, proc, "-service", "nope")
        # Each server's own words for it: grpc-go says "unknown service", grpcio nothing.
        assert r.returncode == 3 and r.stderr.startswith("error: health rpc failed: rpc error: code = NotFound desc = "), r
        r = probe_inside(bindir, proc, "-v")
        assert r.returncode == 0 and r.stderr.splitlines()[-2:] == ["[+](server) SERVING", "status: SERVING"], r.stderr
        os.kill(supervisor_pid(proc, "pid1"), signal.SIGTERM)
        log.until("[grpc-init] draining", time.monotonic() + 10)
        r = probe_inside(bindir, proc)
        assert (r.returncode, r.stderr) == (4, 'service unhealthy (responded with "NOT_SERVING")\n')
    finally:
        stop(proc, "pid1")


@pytest.mark.parametrize("kind", ["go", "python"])
def test_the_probe_with_no_flags_asks_the_agent_for_an_mtls_child(bindir, pki, kind):
    client_cert, client_key = pki.client_rsa_pkcs8
    gate = ["-ready-tls", "-ready-tls-ca-cert", str(pki.ca), "-ready-tls-client-cert", str(client_cert),
            "-ready-tls-client-key", str(client_key)]
    proc, _, log = launch(bindir, "pid1", gate, tls_child(pki, client_ca=pki.ca, kind=kind))
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        r = probe_inside(bindir, proc, "-rpc-timeout", "2s")
        assert (r.returncode, r.stderr) == (0, "status: SERVING\n")
    finally:
        stop(proc, "pid1")


def test_the_probe_with_no_flags_while_nothing_is_found_and_with_no_agent(bindir):
    """No gRPC server yet: exit 2 with why, at once. No grpc-init in the namespace: the
    reference's own error."""
    proc, _, log = launch(bindir, "pid1", [], ["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while (r := probe_inside(bindir, proc)).returncode == 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the agent's start-up, which nothing signals; bounded
        assert r.returncode == 2, r
        assert r.stderr == 'error: failed to connect service at "grpc-init health agent": no listening socket found yet\n'
    finally:
        stop(proc, "pid1")
    alone = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", str(bindir / "grpc_health_probe")],
                           capture_output=True, text=True, timeout=15)
    assert (alone.returncode, alone.stderr) == (1, "error: -addr not specified\n")


def test_a_client_outside_the_pid_namespace_is_not_answered(bindir):
    """Another container of the pod shares the network namespace (the abstract name) but not
    the PID namespace: the agent closes its connection without an answer."""
    proc, _, log = launch(bindir, "pid1", [], go_server())
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        inode = os.readlink(f"/proc/{supervisor_pid(proc, 'pid1')}/ns/pid")[5:-1]
        # A LocalQuery frame: every configured service, not verbose, a 1 s timeout.
        query = bytes([1, 32]) + (12).to_bytes(2, "big") + bytes([0, 0, 0, 0]) + (1_000_000_000).to_bytes(8, "big")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(f"\0grpc-init/probe/{inode}")
            try:
                s.sendall(query)
                answer = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                answer = b""  # closed before the query was even read: refused all the same
            assert answer == b"", "a peer of another PID namespace is not answered"
        r = probe_inside(bindir, proc)
        assert (r.returncode, r.stderr) == (0, "status: SERVING\n"), "a probe inside is still answered"
    finally:
        stop(proc, "pid1")


@pytest.mark.parametrize("kind,mode", [("go", "subreaper"), ("go", "pid1"), ("python", "pid1")])
def test_exit_unhealthy_after_a_child_turns_not_serving(bindir, kind, mode):
    proc, _, log = launch(bindir, mode, ["-exit-unhealthy-after", "500ms"], controlled(kind), stdin=subprocess.PIPE)
    with ending(proc):
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        proc.stdin.write(b"SET - NOT_SERVING\n")
        proc.stdin.flush()
        turned = time.monotonic()
        line = log.until("[grpc-init] error: health: ", time.monotonic() + 10)
        took = time.monotonic() - turned
        assert line == ("[grpc-init] error: health: not SERVING for 500ms (-exit-unhealthy-after): NOT_SERVING; stopping the child")
        assert 0.45 < took < 1.5, took
        assert proc.wait(timeout=15) == 125


def test_exit_unresponsive_after_a_hung_child_with_its_watch_open(bindir):
    """SIGSTOP: the Watch stays open and says nothing; only a Check that gets no answer shows it."""
    proc, lines, log = launch(bindir, "subreaper", ["-exit-unresponsive-after", "800ms", "-grace", "500ms"], go_server())
    with ending(proc):
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        server = [c for c in children(proc.pid) if command_of(c) != AGENT][0]
        os.kill(server, signal.SIGSTOP)
        stopped = time.monotonic()
        line = log.until("[grpc-init] error: health: ", time.monotonic() + 10)
        took = time.monotonic() - stopped
        assert line == "[grpc-init] error: health: no answer from the health service for 800ms (-exit-unresponsive-after); stopping the child"
        assert 0.7 < took < 2.5, took
        assert proc.wait(timeout=15) == 125


def test_exit_unresponsive_after_the_server_is_gone(bindir, tmp_path):
    """The server dies, its parent (the child) lives on: nobody answers."""
    pidfile = tmp_path / "server.pid"
    server = " ".join(go_server())
    proc, _, log = launch(bindir, "subreaper", ["-exit-unresponsive-after", "600ms"],
                          ["sh", "-c", f"{server} & echo $! > {pidfile}; sleep 60"])
    with ending(proc):
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        log.until("[grpc-init] error: health: no answer from the health service for 600ms", time.monotonic() + 10)
        assert proc.wait(timeout=15) == 125


def test_no_exit_while_draining(bindir):
    proc, _, log = launch(bindir, "subreaper", ["-exit-unhealthy-after", "300ms", "-drain-delay", "1500ms"], go_server("-control"),
                          stdin=subprocess.PIPE)
    with ending(proc):
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        os.kill(proc.pid, signal.SIGTERM)
        log.until("[grpc-init] draining", time.monotonic() + 10)
        proc.stdin.write(b"SET - NOT_SERVING\n")
        proc.stdin.flush()
        assert proc.wait(timeout=15) == 143, "the drain ran its course: the child's own status"
        assert b"exit-unhealthy-after" not in read_to_end(proc.stderr, 10, "grpc-init's stderr")


@pytest.mark.parametrize("kind,mode", [("go", "subreaper"), ("python", "pid1")])
def test_several_services_are_ready_together(bindir, kind, mode):
    port = free_port()
    proc, _, log = launch(bindir, mode, ["-v", "-ready-service", "db", "-ready-service", "api", "-health-addr", f"127.0.0.1:{port}"],
                          controlled(kind, "db=NOT_SERVING", "api=NOT_SERVING"), stdin=subprocess.PIPE)
    try:
        log.until("[grpc-init] health: found the gRPC server", time.monotonic() + 20)
        # Each service's first answer (in either order), then the change.
        first = {log.until('[grpc-init] health: service "', time.monotonic() + 10) for _ in range(2)}
        assert first == {'[grpc-init] health: service "db": NOT_SERVING', '[grpc-init] health: service "api": NOT_SERVING'}
        proc.stdin.write(b"SET db SERVING\n")
        proc.stdin.flush()
        log.until('[grpc-init] health: service "db" SERVING', time.monotonic() + 10)
        status, body = get(port, "/readyz?verbose")
        assert (status, body) == (503, '[+]db SERVING\n[-]api NOT_SERVING\nreadyz check failed: service "api": NOT_SERVING')
        proc.stdin.write(b"SET api SERVING\n")
        proc.stdin.flush()
        line = log.until("[grpc-init] ready: ", time.monotonic() + 10)
        assert '(services "db", "api") reports SERVING' in line
        assert get(port, "/readyz?verbose") == (200, "[+]db SERVING\n[+]api SERVING\nreadyz check passed")
        assert get(port, "/readyz") == (200, "SERVING")
    finally:
        stop(proc, mode)


def test_watchdog_pings_follow_the_servers_answers_and_stopping_is_said(bindir, tmp_path):
    """WATCHDOG_USEC=400000: WATCHDOG=1 about every 200 ms while the server answers; none while
    it hangs (SIGSTOP); STOPPING=1 when the stop begins."""
    notify = tmp_path / "notify.sock"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(notify))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="400000")
    proc, _, log = launch(bindir, "subreaper", [], go_server(), env=env)

    def messages(seconds):
        got, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            manager.settimeout(left)
            try:
                got.append((time.monotonic(), manager.recv(4096).decode()))
            except socket.timeout:
                break
        return got
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        pings = [t for t, m in messages(1.2) if m == "WATCHDOG=1"]
        assert 4 <= len(pings) <= 8, pings
        server = [c for c in children(proc.pid) if command_of(c) != AGENT][0]
        os.kill(server, signal.SIGSTOP)
        messages(0.45)  # a ping may already be owed for answers before the stop
        assert [m for _, m in messages(1.0) if m == "WATCHDOG=1"] == [], "a hung server stops the pings"
        os.kill(server, signal.SIGCONT)
        assert "WATCHDOG=1" in [m for _, m in messages(1.0)], "they resume once it answers"
        os.kill(proc.pid, signal.SIGTERM)
        assert "STOPPING=1" in [m for _, m in messages(2.0)]
    finally:
        stop(proc, "subreaper")
        manager.close()


def test_socket_activation_hands_the_descriptors_to_the_child(bindir):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    inode = f"socket:[{os.fstat(listener.fileno()).st_ino}]"

    def as_fd_3():
        os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)
    command = ["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec {bindir / "grpc-init"} -- {sys.executable} {PEERS / "activated.py"}']
    # preexec_fn runs before Popen closes descriptors above 2: keep them, fd 3 among them.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=as_fd_3, close_fds=False)
    listener.close()
    lines = LineReader(proc)
    try:
        assert lines.next(time.monotonic() + 20) == "LISTEN_FDS=1 LISTEN_PID is mine"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.makefile().readline() == "hello from the activated child\n"
        agent = agent_of(proc.pid)
        links = [os.readlink(f"/proc/{agent}/fd/{fd}") for fd in os.listdir(f"/proc/{agent}/fd")]
        assert inode not in links, "the activated socket is the child's, not the agent's"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_server_starting_late_is_seen_within_tens_of_milliseconds(bindir):
    """The server starts listening 1.5 s in: the gate reports it ready within 200 ms (scans every
    50 ms for the first 30 s), where a backed-off scan took up to a second."""
    command = [sys.executable, str(PEERS / "silent_first.py"), "--silent", "0", "--after", "1.5", "--", *go_server()]
    proc, lines, log = launch(bindir, "subreaper", [], command)
    try:
        lines.until("READY ", time.monotonic() + 20)
        listening = time.monotonic()
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        assert time.monotonic() - listening < 0.2
    finally:
        stop(proc, "subreaper")


def test_health_timeout_bounds_an_http_probes_wait(bindir):
    """HTTP carries no deadline: -health-timeout is the one an httpGet probe gets."""
    port = free_port()
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{port}", "-health-timeout", "200ms"],
                          go_server("-delay", "2s"))
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        start = time.monotonic()
        status, _ = get(port, "/livez")
        took = time.monotonic() - start
        assert status == 503 and 0.15 < took < 1.0, (status, took)
        assert get(port, "/livez?timeout=3s")[0] == 200, "?timeout= still overrides it"
    finally:
        stop(proc, "subreaper")


def test_a_server_flapping_its_status_cannot_make_pid1_a_log_pump(bindir):
    """100 changes of status in a row: at most 20 lines about them in the 10 s window, then one
    line saying how many were not logged; the state itself still follows the server."""
    proc, out, log = launch(bindir, "pid1", [], controlled("go"), stdin=subprocess.PIPE)
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        for i in range(100):
            status = "NOT_SERVING" if i % 2 == 0 else "SERVING"
            proc.stdin.write(f"SET - {status}\n".encode())
            proc.stdin.flush()
            out.until(f"SET - {status} ", time.monotonic() + 10)
        lines = []
        deadline = time.monotonic() + 15
        while not (line := log.next(deadline)).startswith("[grpc-init] warning: ") or "not logged" not in line:
            lines.append(line)
        changes = [line for line in lines if line.startswith("[grpc-init] health: ")]
        assert 1 <= len(changes) <= 20, lines
        # grpc-go's Watch may send two quick changes as one: more than 20 reached grpc-init.
        held = int(line.split("warning: ")[1].split(" ")[0])
        assert held >= 1 and len(changes) + held > 20, (line, lines)
        r = probe_inside(bindir, proc)
        assert (r.returncode, r.stderr) == (0, "status: SERVING\n"), "the last SET was SERVING"
    finally:
        stop(proc, "pid1")
