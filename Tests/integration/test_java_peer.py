"""grpc-java (Netty transport) as a third peer, next to grpc-go and grpcio: the probe against it
(plaintext and mutual TLS), the gate supervising it (ready through Watch, every transition, a
graceful stop on SIGTERM with Netty's GOAWAY) and the health endpoint in front of it. Netty's
keepalive enforcement sends a client that pings more often than permitKeepAliveTime away with
GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; the agent's one long-lived connection never pings, so
it is never sent away, and it answers the server's PINGs (Netty's bandwidth probes, its graceful
stop's).
The JVM starts slowly: one server per test, the probe's two shared by the module."""
import os
import platform
import re
import signal
import socket
import subprocess
import tempfile
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ROOT, LineReader, assert_one_line_failure
from test_health_endpoint import free_port, get
from test_readiness import agent_of, await_line, launch, polling_forever, wakeups

JAVA_SERVER = ROOT / ".build" / "peers" / "javaserver" / "javaserver"
if not JAVA_SERVER.exists():
    pytest.skip(f"no grpc-java peer ({JAVA_SERVER}): scripts/install-deps.sh builds it from Debian's libgrpc-java",
                allow_module_level=True)

# Netty's KeepAliveEnforcer with no call in flight allows one PING in two hours, whatever
# permitKeepAliveTime says; with calls, one per permitKeepAliveTime. Two strikes are forgiven.
STRICT = ["-permit-keepalive-time", "1h"]
ENHANCE_YOUR_CALM = 0xB
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# A JVM's first calls load and compile classes: on a busy machine they take more than the
# probe's default second.
SLOW_FIRST_CALLS = ["-connect-timeout", "20s", "-rpc-timeout", "20s"]


def java_server(*args):
    return [str(JAVA_SERVER), *[str(a) for a in args]]


def frames(lines):
    """The server's FRAME lines as (direction, type, peer port, fields)."""
    out = []
    for line in lines:
        m = re.match(r"FRAME (INBOUND|OUTBOUND) (\w+) peer=(\d+) (.*)", line)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3)), m.group(4)))
    return out


class Recording(LineReader):
    """A LineReader that keeps every line it read, for what is checked once the process ended."""

    def __init__(self, proc, stream=None):
        super().__init__(proc, stream)
        self.seen = []

    def next(self, deadline):
        line = super().next(deadline)
        self.seen.append(line)
        return line

    def all(self, rest=b""):
        return self.seen + (self.buffer + rest).decode(errors="surrogateescape").splitlines()


def gate(bindir, gate_args, server_args, stdin=None):
    """grpc-init (subreaper) supervising a Java server; its stdout and stderr recorded."""
    proc, _, _ = launch(bindir, "subreaper", gate_args, java_server(*server_args), stdin=stdin)
    return proc, Recording(proc), Recording(proc, proc.stderr)


def terminate(proc, lines, log, timeout=20):
    """SIGTERM to grpc-init; every line of the server and of grpc-init, once it exited."""
    if proc.stdin:
        proc.stdin.close()
        proc.stdin = None
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return lines.all(out), log.all(err)


class Standalone:
    """A Java server started on its own; its stdout read for READY and FRAME lines."""

    def __init__(self, *args):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(java_server(*args), stdout=subprocess.PIPE, stderr=self.log)
        self.lines = LineReader(self.proc)
        self.port = None

    def await_ready(self, timeout=30):
        self.port = int(self.lines.until("READY ", time.monotonic() + timeout).rsplit(":", 1)[1])

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def standalone(pki):
    """A plaintext server and one that requires client certificates, started together (their
    JVMs start in parallel); each has a NOT_SERVING service "down"."""
    cert, key = pki.server_rsa
    servers = {"plaintext": Standalone("-services", "down=NOT_SERVING"),
               "mtls": Standalone("-tls-cert", cert, "-tls-key", key, "-tls-client-ca", pki.ca, "-services", "down=NOT_SERVING")}
    try:
        for s in servers.values():
            s.await_ready()
        yield servers
    finally:
        for s in servers.values():
            s.close()


@pytest.mark.parametrize("args,code,line", [
    ([], 0, "status: SERVING"),
    (["-service", "down"], 4, 'service unhealthy (responded with "NOT_SERVING")'),
    (["-service", "nope"], 3, "error: health rpc failed: rpc error: code = NotFound desc = unknown service nope"),
])
def test_probe_against_a_plaintext_java_server(probe, standalone, args, code, line):
    r = probe("-addr", f"127.0.0.1:{standalone['plaintext'].port}", *SLOW_FIRST_CALLS, *args, timeout=60)
    assert (r.code, r.lines) == (code, [line])


@pytest.mark.parametrize("args,code,line", [
    ([], 0, "status: SERVING"),
    (["-service", "down"], 4, 'service unhealthy (responded with "NOT_SERVING")'),
    (["-service", "nope"], 3, "error: health rpc failed: rpc error: code = NotFound desc = unknown service nope"),
])
def test_probe_against_a_java_server_requiring_client_certificates(probe, pki, standalone, args, code, line):
    cert, key = pki.client_rsa_pkcs8
    r = probe("-addr", f"localhost:{standalone['mtls'].port}", "-tls", "-tls-ca-cert", str(pki.ca), "-tls-client-cert", str(cert),
              "-tls-client-key", str(key), *SLOW_FIRST_CALLS, *args, timeout=60)
    assert (r.code, r.lines) == (code, [line])


def test_probe_without_a_client_certificate_is_told_why(probe, pki, standalone):
    """Netty's OpenSSL engine speaks TLS 1.2 here: the server refuses a missing client
    certificate with a handshake_failure alert inside the handshake, not after it as TLS 1.3
    does; the probe names the cause all the same."""
    port = standalone["mtls"].port
    r = probe("-addr", f"localhost:{port}", "-tls", "-tls-ca-cert", str(pki.ca), "-v", *SLOW_FIRST_CALLS, timeout=60)
    assert "tls: TLSv1.2" not in "\n".join(r.lines), "the handshake does not complete"
    assert r.code == 2, r
    assert r.lines[-1] == (f'error: failed to connect service at "localhost:{port}": tls: the server requires a client certificate '
                           "and closed the connection (remote error: tls: handshake failure); none was given "
                           "(-tls-client-cert, -tls-client-key)"), r


def test_the_endpoint_in_front_of_a_java_server_requiring_client_certificates(bindir, pki, standalone):
    cert, key = pki.client_rsa_pkcs8
    endpoint = free_port()
    gate_args = ["-health-addr", f"127.0.0.1:{endpoint}", "-ready-addr", f"localhost:{standalone['mtls'].port}", "-ready-tls",
                 "-ready-tls-ca-cert", str(pki.ca), "-ready-tls-client-cert", str(cert), "-ready-tls-client-key", str(key)]
    proc, _, log = launch(bindir, "subreaper", gate_args, ["sleep", "600"])
    try:
        await_line(log, "[grpc-init] ready: ")
        assert get(endpoint, "/readyz") == (200, "SERVING")
        assert get(endpoint, "/livez?service=down") == (200, "NOT_SERVING")
        assert get(endpoint, "/readyz?service=down") == (503, "NOT_SERVING")
        with grpc.insecure_channel(f"127.0.0.1:{endpoint}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=15)


def test_an_mtls_child_found_with_no_flags_is_said_to_need_a_client_certificate(bindir, pki):
    """Discovery tries TLS on the child's port: a TLS 1.2 server that ends the handshake for
    want of a client certificate is named as such, with the flags that give one."""
    cert, key = pki.server_rsa
    proc, lines, log = gate(bindir, ["-v"], ["-tls-cert", cert, "-tls-key", key, "-tls-client-ca", pki.ca])
    try:
        port = int(lines.until("READY ", time.monotonic() + 30).rsplit(":", 1)[1])
        # Earlier reasons may name a JVM too slow to answer at first.
        deadline = time.monotonic() + 30
        while "requires a client certificate" not in (reason := log.until("[grpc-init] not ready yet: ", deadline)):
            pass
        assert f"127.0.0.1:{port}: a TLS server that requires a client certificate (give -ready-tls-client-cert" in reason, reason
    finally:
        terminate(proc, lines, log)


def ping_until_sent_away(port, pings=3, timeout=10):
    """A client that sends `pings` PINGs at once on a connection with no call, as a client with
    an aggressive keepalive would; returns its port and the GOAWAY's error code and debug data."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        me = s.getsockname()[1]
        ping = lambda n: (8).to_bytes(3, "big") + bytes([6, 0]) + (0).to_bytes(4, "big") + n.to_bytes(8, "big")
        s.sendall(PREFACE + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]) + b"".join(ping(n) for n in range(pings)))
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                length, kind = int.from_bytes(data[:3], "big"), data[3]
                payload, data = data[9:9 + length], data[9 + length:]
                if kind == 7:
                    return me, int.from_bytes(payload[4:8], "big"), payload[8:].decode()
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    raise AssertionError("no GOAWAY")


def test_gated_through_watch_with_strict_keepalive_enforcement(bindir, tmp_path):
    """The gate and the endpoint in front of a server that sends away any client pinging more
    than once an hour: ready through Watch, each transition seen, the endpoint's answers; the
    agent, idle, has no timer at all (so it cannot ping), the server sees no PING from it, and
    the same Watch still carries the next change. A client that does ping is sent away."""
    ready = tmp_path / "ready"
    endpoint = free_port()
    proc, lines, log = gate(bindir, ["-ready-file", str(ready), "-health-addr", f"127.0.0.1:{endpoint}"],
                            ["-control", "-services", "down=NOT_SERVING", *STRICT], stdin=subprocess.PIPE)

    def set_status(status):
        proc.stdin.write(f"SET - {status}\n".encode())
        proc.stdin.flush()

    try:
        port = int(lines.until("READY ", time.monotonic() + 30).rsplit(":", 1)[1])
        found = await_line(log, "[grpc-init] health: found the gRPC server at ")
        assert found.startswith(f"[grpc-init] health: found the gRPC server at 127.0.0.1:{port} ") and found.endswith(", plaintext"), found
        assert await_line(log, "[grpc-init] ready: ").startswith(f"[grpc-init] ready: 127.0.0.1:{port} reports SERVING, ")
        assert ready.read_text() == "SERVING\n"

        assert get(endpoint, "/readyz") == (200, "SERVING")
        assert get(endpoint, "/livez") == (200, "SERVING")
        assert get(endpoint, "/readyz?service=down") == (503, "NOT_SERVING")
        assert get(endpoint, "/readyz?service=nope") == (503, "rpc error: code = NotFound desc = unknown service nope")
        with grpc.insecure_channel(f"127.0.0.1:{endpoint}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING

        set_status("NOT_SERVING")
        assert await_line(log, "[grpc-init] health: ") == "[grpc-init] health: NOT_SERVING (was SERVING)"
        assert not ready.exists()
        assert get(endpoint, "/readyz") == (503, "NOT_SERVING")
        set_status("SERVING")
        assert await_line(log, "[grpc-init] health: ") == "[grpc-init] health: SERVING (was NOT_SERVING)"
        assert ready.read_text() == "SERVING\n"

        # Idle: the agent sleeps in poll(2) with no timeout, so no keepalive timer of its own can
        # ever fire, however long it stays so; over a window, it does not wake.
        agent = agent_of(proc.pid)
        if platform.machine() == "x86_64":
            deadline = time.monotonic() + 10
            while not polling_forever(agent):
                assert time.monotonic() < deadline, "the agent has a deadline pending while idle"
                time.sleep(0.005)  # states the kernel does not signal; bounded
        before = wakeups(agent)
        time.sleep(1)  # a bounded observation window: nothing can be awaited that should not happen
        assert wakeups(agent) == before

        # The enforcement is armed: a pinging client is sent away.
        pinger, code, debug = ping_until_sent_away(port)
        assert (code, debug) == (ENHANCE_YOUR_CALM, "too_many_pings")

        # The agent's Watch is where it was: the next change comes on it, with no GOAWAY and no
        # reconnection in between.
        set_status("NOT_SERVING")
        between = []
        deadline = time.monotonic() + 20
        while (line := log.next(deadline)) != "[grpc-init] health: NOT_SERVING (was SERVING)":
            between.append(line)
        assert not [l for l in between if "GOAWAY" in l or "found the gRPC server" in l or "not ready" in l], between
    finally:
        server_lines, _ = terminate(proc, lines, log)
    seen = frames(server_lines)
    # Only the pinger pinged, and only it was sent away before the stop.
    assert {peer for d, kind, peer, fields in seen if d == "INBOUND" and kind == "PING" and "ack=false" in fields} == {pinger}, seen
    calm = [f for f in seen if f[1] == "GO_AWAY" and "errorCode=11" in f[3]]
    assert [(peer, fields.endswith("debug=too_many_pings")) for _, _, peer, fields in calm] == [(pinger, True)], seen


def test_a_tls_only_server_found_with_no_flags_stops_gracefully(bindir, pki):
    """Discovered with no flags over TLS; Netty's PINGs (it measures each connection's
    bandwidth-delay product with them) are acknowledged on every connection; on SIGTERM the
    server says NOT_SERVING, sends GOAWAY and stops gracefully (the agent leaves the old
    connection at once, so no call of its holds the stop up), and grpc-init exits with the
    JVM's status."""
    cert, key = pki.server_ecdsa
    proc, lines, log = gate(bindir, ["-v"], ["-tls-cert", cert, "-tls-key", key, *STRICT, "-grace", "20s"])
    try:
        port = int(lines.until("READY ", time.monotonic() + 30).rsplit(":", 1)[1])
        found = await_line(log, "[grpc-init] health: found the gRPC server at ")
        assert f"127.0.0.1:{port} " in found and "TLS, certificate not verified (the socket is the child's" in found, found
        await_line(log, "[grpc-init] ready: ")
        start = time.monotonic()
    finally:
        server_lines, log_lines = terminate(proc, lines, log)
    elapsed = time.monotonic() - start
    assert proc.returncode == 143, "\n".join(log_lines + server_lines)
    assert "STOPPED graceful" in server_lines, server_lines
    assert elapsed < 20, "within the server's grace: the agent does not hold the stop up"
    seen = frames(server_lines)
    pinged = {peer for d, kind, peer, fields in seen if d == "OUTBOUND" and kind == "PING" and "ack=false" in fields}
    acked = {peer for d, kind, peer, fields in seen if d == "INBOUND" and kind == "PING" and "ack=true" in fields}
    assert pinged and pinged == acked, seen
    assert not [f for f in seen if f[0] == "INBOUND" and f[1] == "PING" and "ack=false" in f[3]], "the agent never pings"
    assert [f for f in seen if f[1] == "GO_AWAY" and "errorCode=0 " in f[3]], "Netty's GOAWAY"
    # Netty's only other GOAWAY: INTERNAL_ERROR "Connection reset" for a connection of the agent's
    # that the kernel reset as grpc-init ended (its agent stopped with a call still open).
    assert not [f for f in seen if f[1] == "GO_AWAY" and "errorCode=0 " not in f[3] and "debug=Connection reset" not in f[3]], seen
    assert "[grpc-init] health: NOT_SERVING (was SERVING)" in log_lines, log_lines
    # The agent leaves the old connection: at the GOAWAY, or, when the server closes it first,
    # at the close, finding its listener gone (which of the two comes first is the JVM's timing).
    assert any(l.endswith("sent GOAWAY; watching on a new connection") or l.endswith("is gone; it no longer counts")
               for l in log_lines), "\n".join(log_lines)
    assert log_lines[-1].endswith("exited with status 143"), log_lines
