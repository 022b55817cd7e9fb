"""-health-addr: the health agent answers kubelet's native probes (HTTP GET /readyz and /livez,
gRPC Health over h2c) in front of any child, from a fresh Check of it on the agent's connection;
-drain-delay: on SIGTERM, NOT_SERVING / 503 draining at once and the SIGTERM passed on later.
Python's http.client and a grpcio health stub stand in for kubelet; plaintext, TLS, mTLS and
SPIFFE children from grpcio and grpc-go; a hand-written client for what no real client does."""
import http.client
import os
import random
import signal
import socket
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from peers import free_port, workload_api
from test_readiness import agent_of, await_line, go_server, launch, py_server, stop

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def get(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode().rstrip("\n")
    finally:
        conn.close()


def check(port, service="", timeout=5):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status


def tls_server(kind, pair, client_ca=None):
    """A TLS-only child of `kind` ("go" or "python") with the certificate `pair`, and with
    `client_ca`, one that requires client certificates signed by it."""
    cert, key = pair
    if kind == "go":
        return go_server("-tls-cert", str(cert), "-tls-key", str(key), *(["-tls-client-ca", str(client_ca)] if client_ca else []))
    return py_server("--tls-cert", str(cert), "--tls-key", str(key), *(["--tls-client-ca", str(client_ca)] if client_ca else []))


def gated(bindir, command, *gate, mode="subreaper", env=None, stdin=None):
    """grpc-init with the endpoint on a free port, once the child is ready; (proc, lines, log, port)."""
    port = free_port()
    proc, lines, log = launch(bindir, mode, ["-health-addr", f"127.0.0.1:{port}", *gate], command, env=env, stdin=stdin)
    await_line(log, "[grpc-init] ready: ")
    return proc, lines, log, port


@pytest.mark.parametrize("kind", ["go", "python"])
def test_readyz_livez_and_grpc_check_in_front_of_a_plaintext_child(bindir, kind):
    args = ["-services", "down=NOT_SERVING"] if kind == "go" else ["--services", "down=NOT_SERVING"]
    command = go_server(*args) if kind == "go" else py_server(*args)
    proc, _, _, port = gated(bindir, command)
    try:
        assert get(port, "/readyz") == (200, "SERVING")
        assert get(port, "/livez") == (200, "SERVING")
        assert get(port, "/readyz?service=down") == (503, "NOT_SERVING")
        assert get(port, "/livez?service=down") == (200, "NOT_SERVING"), "alive, though out of rotation"
        status, body = get(port, "/readyz?service=nope")
        assert status == 503 and body.startswith("rpc error: code = NotFound desc = "), body
        assert get(port, "/livez?service=nope")[0] == 200, "NOT_FOUND is an answer"
        assert get(port, "/nope") == (404, "not found")
        assert check(port) == SERVING
        assert check(port, "down") == NOT_SERVING
        with pytest.raises(grpc.RpcError) as e:
            check(port, "nope")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as e:
                channel.unary_unary("/grpc.health.v1.Health/Nope")(b"", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        stop(proc, "subreaper")


@pytest.mark.parametrize("kind", ["go", "python"])
def test_in_front_of_a_tls_only_child(bindir, pki, kind):
    proc, _, _, port = gated(bindir, tls_server(kind, pki.server_ecdsa), mode="pid1")
    try:
        assert get(port, "/readyz") == (200, "SERVING")
        assert check(port) == SERVING
    finally:
        stop(proc, "pid1")


@pytest.mark.parametrize("kind", ["go", "python"])
def test_in_front_of_an_mtls_child(bindir, pki, kind):
    client_cert, client_key = pki.client_rsa_pkcs8
    command = tls_server(kind, pki.server_rsa, client_ca=pki.ca)
    gate = ["-ready-tls", "-ready-tls-ca-cert", str(pki.ca), "-ready-tls-server-name", "localhost",
            "-ready-tls-client-cert", str(client_cert), "-ready-tls-client-key", str(client_key)]
    proc, _, _, port = gated(bindir, command, *gate)
    try:
        assert get(port, "/livez") == (200, "SERVING")
        assert check(port) == SERVING
    finally:
        stop(proc, "subreaper")


@pytest.mark.parametrize("kind", ["go", "python"])
def test_in_front_of_a_spiffe_child(bindir, pki, tmp_path, kind):
    with workload_api(pki, tmp_path) as (_, endpoint):
        command = tls_server(kind, pki.spiffe_server, client_ca=pki.spiffe_ca)
        proc, _, _, port = gated(bindir, command, "-ready-spiffe", env=dict(os.environ, SPIFFE_ENDPOINT_SOCKET=endpoint))
        try:
            assert get(port, "/readyz") == (200, "SERVING")
            assert check(port) == SERVING
        finally:
            stop(proc, "subreaper")


def test_a_hung_child_fails_livez_within_the_timeout(bindir):
    """The child's Watch works (so it was ready), but its Check hangs: livez says so in time."""
    proc, _, _, port = gated(bindir, go_server("-delay", "10s"))
    try:
        start = time.monotonic()
        status, body = get(port, "/livez?timeout=300ms")
        elapsed = time.monotonic() - start
        assert status == 503 and "deadline" in body, body
        assert 0.3 <= elapsed < 0.8, elapsed
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            check(port, timeout=0.4)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 1.0
    finally:
        stop(proc, "subreaper")


def test_watch_is_relayed(bindir):
    proc, lines, _, port = gated(bindir, go_server("-control"), stdin=subprocess.PIPE)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
            assert next(stream).status == SERVING
            proc.stdin.write(b"SET - NOT_SERVING\n")
            proc.stdin.flush()
            assert next(stream).status == NOT_SERVING
            proc.stdin.write(b"SET - SERVING\n")
            proc.stdin.flush()
            assert next(stream).status == SERVING
            stream.cancel()
    finally:
        proc.stdin.close()
        proc.stdin = None
        stop(proc, "subreaper")


def test_drain_answers_draining_at_once_and_passes_sigterm_on_later(bindir):
    proc, lines, log, port = gated(bindir, go_server(), "-drain-delay", "1s", mode="pid1")
    from test_supervisor import supervisor_pid
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
        assert next(stream).status == SERVING
        start = time.monotonic()
        os.kill(supervisor_pid(proc, "pid1"), signal.SIGTERM)
        assert next(stream).status == NOT_SERVING
        assert time.monotonic() - start < 0.5, "at once"
        assert get(port, "/readyz") == (503, "draining")
        assert get(port, "/livez") == (200, "SERVING"), "the child still serves"
        assert check(port) == NOT_SERVING
        line = await_line(log, "[grpc-init] draining: ")
        assert line == "[grpc-init] draining: SIGTERM goes to the child in 1s; the health endpoint answers draining (was SERVING)"
        proc.communicate(timeout=15)
        elapsed = time.monotonic() - start
    assert proc.returncode == 143
    assert 1.0 <= elapsed < 3.0, elapsed


def test_a_second_sigterm_during_the_drain_passes_on_at_once(bindir):
    proc, lines, log, port = gated(bindir, go_server(), "-drain-delay", "30s")
    os.kill(proc.pid, signal.SIGTERM)
    await_line(log, "[grpc-init] draining: ")
    start = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=15)
    assert time.monotonic() - start < 1.0
    assert proc.returncode == 143


def test_idle_connections_and_a_slowloris_do_not_keep_probes_out(bindir):
    proc, _, _, port = gated(bindir, go_server())
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"GET /readyz HTTP/1.1\r\n")
        for _ in range(20):
            assert get(port, "/readyz") == (200, "SERVING")
            slow.sendall(b"X-Slow: 1\r\n")
        assert check(port) == SERVING
        # The slowloris is cut off once its head is late (5 s after it connected).
        slow.settimeout(10)
        assert slow.recv(1024) == b""
    finally:
        for s in idle:
            s.close()
        stop(proc, "subreaper")


def h2_frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def test_rapid_reset_is_refused_and_probes_go_on(bindir):
    proc, _, _, port = gated(bindir, go_server())
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0)
        # HEADERS of a Check (HPACK literals), at once RST_STREAM, a thousand times.
        def literal(name, value):
            return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
        block = literal(b":method", b"POST") + literal(b":path", b"/grpc.health.v1.Health/Check") + \
            literal(b":scheme", b"http") + literal(b"content-type", b"application/grpc")
        for i in range(1000):
            stream = 2 * i + 1
            out += h2_frame(1, 4, stream, block) + h2_frame(3, 0, stream, b"\x00\x00\x00\x08")
        s.sendall(out)
        received = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
        assert b"too many streams reset" in received, "GOAWAY with its reason"
        s.close()
        assert get(port, "/readyz") == (200, "SERVING")
        assert check(port) == SERVING
    finally:
        stop(proc, "subreaper")


def test_garbage_bytes_are_answered_or_dropped_and_nothing_crashes(bindir):
    proc, _, log, port = gated(bindir, go_server())
    rng = random.Random(7)
    try:
        agent = agent_of(proc.pid)
        for i in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                prefix = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if i % 2 else b""
                s.sendall(prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096))))
                s.shutdown(socket.SHUT_WR)
                # Read until the endpoint closes the connection, which it must within 10 s.
                deadline = time.monotonic() + 10
                while (left := deadline - time.monotonic()) > 0:
                    s.settimeout(left)
                    if not s.recv(65536):
                        break
                else:
                    pytest.fail(f"connection {i} still open 10 s after its garbage")
        assert agent_of(proc.pid) == agent, "the same agent: it did not crash"
        assert get(port, "/readyz") == (200, "SERVING")
    finally:
        rest = stop(proc, "subreaper")
    assert "health agent (pid" not in rest


def test_the_agent_killed_mid_request_is_started_again(bindir):
    proc, lines, log, port = gated(bindir, go_server("-delay", "10s", "-echo-headers"), "-v")
    try:
        agent = agent_of(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/livez?service=mid-request&timeout=5s")
        # The child prints the Check the agent made for this request: it is in flight.
        lines.until('SERVICE "mid-request"', time.monotonic() + 10)
        os.kill(agent, signal.SIGKILL)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            conn.getresponse()
        await_line(log, f"[grpc-init] warning: health agent (pid {agent}) killed by SIGKILL")
        # The new agent answers (for this child, whose Check hangs: in time, with why).
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = get(port, "/livez?timeout=100ms")
            except ConnectionRefusedError as refused:
                answer = refused
            if isinstance(answer, tuple) and answer[0] == 503 and "context deadline exceeded" in answer[1]:
                break
            assert time.monotonic() < deadline, f"the new agent's last answer: {answer!r}"
            time.sleep(0.05)  # the new agent's listen and first Watch; bounded
    finally:
        stop(proc, "subreaper")


@pytest.mark.parametrize("args,message", [
    (["-health-addr", "localhost:8086"], 'invalid -health-addr "localhost:8086": want :PORT, IP:PORT or [IPv6]:PORT'),
    (["-health-addr", ":0"], 'invalid -health-addr ":0": want :PORT, IP:PORT or [IPv6]:PORT'),
    (["-ready=false", "-health-addr", ":8086"], "-health-addr has no effect with -ready=false"),
    (["-drain-delay", "-1s"], "-drain-delay must not be negative (specified: -1s)"),
])
def test_endpoint_flag_errors(bindir, args, message):
    out = subprocess.run([str(bindir / "grpc-init"), *args, "--", "true"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "[grpc-init] error: " + message


def test_a_port_in_use_is_reported_at_once(bindir):
    """The supervisor binds the health port before it starts the child: a port it cannot have
    is an error at once (exit 1), not an agent failing in a loop."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = subprocess.run([str(bindir / "grpc-init"), "-health-addr", f"127.0.0.1:{port}", "--", *go_server()],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 1
        assert out.stderr.splitlines() == [f"[grpc-init] error: health endpoint: cannot listen on 127.0.0.1:{port}: bind: Address already in use"]


def test_a_crashing_agent_costs_milliseconds_not_probes(bindir):
    """The port stays bound while an agent is restarted (the supervisor holds it), so a probe
    sent just after a crash waits in the backlog and is answered by the next agent, started at
    once for the first crashes in a minute, then after a pause that doubles."""
    proc, _, log, port = gated(bindir, go_server(), "-v")
    try:
        for crash in range(4):
            agent = agent_of(proc.pid)
            os.kill(agent, signal.SIGSEGV)
            start = time.monotonic()
            status, body = get(port, "/livez?timeout=2s")
            elapsed = time.monotonic() - start
            assert status in (200, 503), (status, body)
            when = "now" if crash < 3 else "in 100ms"
            await_line(log, f"[grpc-init] warning: health agent (pid {agent}) killed by SIGSEGV; starting it again {when}")
            print(f"crash {crash + 1}: answered {status} {body!r} {1000 * elapsed:.1f} ms after the agent died")
            assert elapsed < (1.0 if crash < 3 else 1.5), elapsed
            deadline = time.monotonic() + 10
            while get(port, "/readyz") != (200, "SERVING"):
                assert time.monotonic() < deadline, "the new agent did not find the child again"
                time.sleep(0.01)  # the new agent's discovery; bounded
    finally:
        stop(proc, "subreaper")
