"""The probe against real servers: Python grpcio and grpc-go, each in every case."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import LineReader, collect_lines, read_line, server
from peers import free_port

KINDS = ["python", "go"]


@pytest.mark.parametrize("kind", KINDS)
def test_serving(probe, kind):
    with server(kind) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}")
        assert (r.code, r.lines) == (0, ["status: SERVING"])


@pytest.mark.parametrize("kind", KINDS)
def test_not_serving(probe, kind):
    with server(kind, status="NOT_SERVING", services="db=SERVING") as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}")
        assert (r.code, r.lines) == (4, ['service unhealthy (responded with "NOT_SERVING")'])
        assert probe("-addr", f"127.0.0.1:{port}", "-service", "db").code == 0


@pytest.mark.parametrize("kind,message", [("python", ""), ("go", "unknown service")])
def test_unknown_service(probe, kind, message):
    with server(kind) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-service", "nope")
        assert (r.code, r.lines) == (3, [f"error: health rpc failed: rpc error: code = NotFound desc = {message}"])


@pytest.mark.parametrize("kind,message", [("python", "Method not found!"), ("go", "unknown service grpc.health.v1.Health")])
def test_server_without_health_service(probe, kind, message):
    with server(kind, no_health=True) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}")
        assert r.code == 3
        assert r.lines == [f"error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"]


@pytest.mark.parametrize("kind", KINDS)
def test_slow_server_hits_rpc_timeout(probe, kind):
    with server(kind, delay="3s" if kind == "go" else 3) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-timeout", "300ms")
        assert (r.code, r.lines) == (3, ["timeout: health rpc did not complete within 300ms"])
        # The deadline holds: process start-up plus 300 ms, well short of the server's 3 s.
        assert 0.29 <= r.elapsed < 0.6, r


def test_refused_port_is_reported_at_once(probe):
    port = free_port()
    r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "5s")
    assert r.code == 2
    assert r.lines == [f'error: failed to connect service at "127.0.0.1:{port}": dial tcp 127.0.0.1:{port}: connect: connection refused']
    assert r.elapsed < 1.0, r


@pytest.mark.parametrize("kind", KINDS)
def test_rpc_headers_and_user_agent_reach_the_server(probe, kind):
    with server(kind, echo_headers=True) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "X-Token: secret value", "-rpc-header", "x-multi:a",
                  "-rpc-header", "x-multi:b", "-user-agent", "kubelet-probe", "-service", "")
        assert r.code == 0, r
        lines = collect_lines(proc, "", lambda ls: any(l.startswith("SERVICE") for l in ls))
        headers = [l[len("HEADER "):] for l in lines if l.startswith("HEADER ")]
        assert "x-token=secret value" in headers
        assert headers.count("x-multi=a") == 1 and headers.count("x-multi=b") == 1
        assert any(h.startswith("user-agent=kubelet-probe grpc-init/") for h in headers)


def test_reserved_rpc_headers_are_left_out_as_grpc_go_leaves_them(probe):
    """Names gRPC's transport sets itself never go out as metadata (with `te: gzip` on the wire
    grpcio refuses the call); -bin values go out base64-encoded."""
    with server("python", echo_headers=True) as (proc, port):
        reserved = ["te: gzip", "content-type: text/plain", "grpc-timeout: 1S", "user-agent: evil",
                    "grpc-encoding: br", "grpc-status: 0", "grpc-message: x", "grpc-message-type: x", "grpc-status-details-bin: x"]
        r = probe("-addr", f"127.0.0.1:{port}", *[a for h in reserved for a in ("-rpc-header", h)],
                  "-rpc-header", "x-kept: yes", "-rpc-header", "x-blob-bin: \u00e9t\u00e9")
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r
        lines = collect_lines(proc, "", lambda ls: any(l.startswith("SERVICE") for l in ls))
        headers = [l[len("HEADER "):] for l in lines if l.startswith("HEADER ")]
        assert "x-kept=yes" in headers
        assert "x-blob-bin=" + repr("\u00e9t\u00e9".encode()) in headers  # grpcio decodes the base64
        assert not set(headers) & {h.replace(": ", "=", 1) for h in reserved}, headers
        assert any(h.startswith("user-agent=grpc_health_probe grpc-init/") for h in headers)


@pytest.mark.parametrize("header,message", [
    ("x y: v", 'header key "x y" contains illegal characters not in [0-9a-z-_.]'),
    ("x-v: caf\u00e9", 'header key "x-v" contains value with non-printable ASCII characters'),
])
def test_invalid_rpc_headers_fail_the_call_as_grpc_go_does(probe, header, message):
    with server("go") as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", header)
        assert (r.code, r.lines) == (3, [f"error: health rpc failed: rpc error: code = Internal desc = {message}"]), r


def test_verbose_lines(probe):
    with server("go") as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-v", "-rpc-header", "c: d", "-rpc-header", "A: b")
        assert r.code == 0
        assert r.lines[:7] == [
            "parsed options:", f"> addr=127.0.0.1:{port} conn_timeout=1s rpc_timeout=1s",
            "> headers: {map[a:[b] c:[d]]}", "> tls=false", "> alts=false", "> spiffe=false", "establishing connection"]
        assert r.lines[7].startswith("connection established (took ")
        assert r.lines[8].startswith("time elapsed: connect=") and " rpc=" in r.lines[8]
        assert r.lines[9] == "status: SERVING"


class Recorder:
    """A TCP relay that keeps every byte the client sends, to see what went on the wire."""

    def __init__(self, upstream_port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = upstream_port
        self.sent = bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _pipe(self, src, dst, record):
        try:
            while data := src.recv(65536):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def _serve(self):
        # The test's probe connects at once; a relay nobody uses ends with its listener's timeout.
        self.listener.settimeout(30)
        try:
            client, _ = self.listener.accept()
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            up.settimeout(None)
        except OSError:
            return
        threading.Thread(target=self._pipe, args=(client, up, True), daemon=True).start()
        self._pipe(up, client, False)

    def data_frames(self):
        data = bytes(self.sent)[24:]
        frames = []
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if data[3] == 0:
                frames.append(data[9:9 + length])
            data = data[9 + length:]
        return frames


@pytest.mark.parametrize("kind", KINDS)
def test_gzip_really_compresses_the_request(probe, kind):
    with server(kind, services="compressed.svc=NOT_SERVING") as (_, port):
        relay = Recorder(int(port))
        # The server can only name the service's status if it inflated the request.
        r = probe("-addr", f"127.0.0.1:{relay.port}", "-gzip", "-service", "compressed.svc")
        assert (r.code, r.lines) == (4, ['service unhealthy (responded with "NOT_SERVING")'])
        (message,) = relay.data_frames()
        assert message[0] == 1, "compressed-flag set"
        assert message[5:7] == b"\x1f\x8b", "gzip magic"
        assert b"compressed.svc" not in message


@pytest.mark.parametrize("kind", KINDS)
def test_port_only_and_localhost(probe, kind):
    with server(kind, listen="127.0.0.1:0") as (_, port):
        assert probe("-addr", f":{port}").lines == ["status: SERVING"]
        assert probe("-addr", f"localhost:{port}").lines == ["status: SERVING"]


def test_ipv6_literal(probe):
    with server("go", listen="[::1]:0") as (_, port):
        assert probe("-addr", f"[::1]:{port}").lines == ["status: SERVING"]


@pytest.mark.parametrize("kind", KINDS)
def test_unix_socket(probe, kind, tmp_path):
    path = tmp_path / "grpc.sock"
    with server(kind, listen=f"unix:{path}"):
        r = probe("-addr", f"unix://{path}")
        assert (r.code, r.lines) == (0, ["status: SERVING"])
        os.chdir(tmp_path)
        assert probe("-addr", "unix:grpc.sock").lines == ["status: SERVING"]


def test_unix_abstract_socket(probe):
    name = f"grpc-init-test-{os.getpid()}"
    with server("python", listen=f"unix-abstract:{name}"):
        assert probe("-addr", f"unix-abstract:{name}").lines == ["status: SERVING"]


@pytest.mark.parametrize("signo,name", [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupt")])
def test_signal_cancels_a_running_probe(bindir, signo, name):
    with server("go", delay="5s") as (_, port):
        p = subprocess.Popen([str(bindir / "grpc_health_probe"), "-addr", f"127.0.0.1:{port}", "-rpc-timeout", "10s", "-v"],
                             stderr=subprocess.PIPE)
        err = LineReader(p, p.stderr)
        err.until("connection established", time.monotonic() + 5)  # the RPC is under way
        p.send_signal(signo)
        rest = err.rest(time.monotonic() + 5)
        assert p.wait(timeout=5) == 3
        assert rest == [f"cancellation received (signal: {name})",
                        "error: health rpc failed: rpc error: code = Canceled desc = context canceled"]


def test_largest_go_durations_are_accepted(probe):
    with server("go") as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "2562047h47m16.854775807s", "-rpc-timeout", "2562047h")
        assert (r.code, r.lines) == (0, ["status: SERVING"])
