"""One question, one verdict, every edge: whatever grpc-init knows of the server's health, the
probe with no flags (the local probe socket), /readyz and /livez on -health-addr, the gRPC Check
there and the exec probe with -addr pointing at the server give the same verdict, each in its
own terms: the probe's exit code and first line, the HTTP status and body, the Check's served
status or its gRPC status code.

One grpc-init and one server per state, asked through every edge. grpc-init runs in a PID
namespace of its own (unshare --pid), since the local probe socket is named for the PID
namespace and other grpc-inits may run beside this one; the probe with no flags is run in that
namespace (nsenter), as kubelet's exec or `podman exec` runs it. VERDICTS is the table: a state's row says how each
edge renders that state's one verdict. The exec probe asks the server itself, with the right
flags and with the wrong ones; a cell it answers that is not grpc-init's verdict (the wrong
flags, the server's own SERVING while grpc-init drains) says so and is held to what the exec
probe says of it, not to the verdict."""
import os
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import PEERS
from test_health_actions import probe_inside
from test_health_endpoint import free_port, get
from test_readiness import go_server, launch, stop
from test_supervisor import supervisor_pid

# The one timeout of every question: the probes' -rpc-timeout, grpc-init's -health-timeout.
TIMEOUT = "500ms"
# The Check is sent with no deadline, so that grpc-init's -health-timeout bounds it as it bounds
# /readyz and /livez (a deadline of TIMEOUT would race grpc-init's answer); the test's own wait
# for the answer is bounded by this.
CHECK_WAIT = 10.0
UNKNOWN = "no.such.Service"

EDGES = ["local", "readyz", "livez", "check", "exec", "exec-wrong-flags"]


class Cell(NamedTuple):
    """How one edge renders the verdict: `code` is the probe's exit code, the HTTP status, or
    the Check's served status or gRPC status code; `names` is in the probe's first line, the
    body, or the status's details; `never` is not. `verdict=False`: what the exec probe says
    of the server, which is not grpc-init's verdict (it asks the server, not grpc-init)."""
    code: object
    names: str
    never: str = ""
    verdict: bool = True


class State(NamedTuple):
    command: object        # the server grpc-init supervises: f(port chosen in advance, certificate)
    gate: object = lambda port: []  # grpc-init's flags beyond -health-addr and -health-timeout
    ready: str = "[grpc-init] ready: "  # grpc-init's log line that says the state is reached
    ready_names: str = ""  # ... and what that line names
    service: str = ""      # the service asked about (-service, ?service=, the Check's field)
    right_flags: object = lambda cert: []  # the exec probe's transport flags for this server: f(certificate)
    wrong_flags: object = lambda cert: ["-tls", "-tls-no-verify"]
    drain: bool = False    # SIGTERM grpc-init (-drain-delay long) once the server is ready


def peer_404(port, certificate):
    return [sys.executable, str(PEERS / "http2_not_found.py"), "--port", str(port)]


def tls_server(port, certificate):
    cert, key = certificate
    return go_server("-tls-cert", str(cert), "-tls-key", str(key), listen=f"127.0.0.1:{port}")


STATES = {
    "serving": State(lambda port, cert: go_server(listen=f"127.0.0.1:{port}")),
    "not-serving": State(lambda port, cert: go_server("-status", "NOT_SERVING", listen=f"127.0.0.1:{port}"),
                         ready="[grpc-init] not ready yet: NOT_SERVING"),
    "unknown-service": State(lambda port, cert: go_server(listen=f"127.0.0.1:{port}"), service=UNKNOWN),
    # A plain HTTP/2 server answering every request 404, found by discovery (no flags) ...
    "http-404": State(peer_404, ready="[grpc-init] not ready yet: ", ready_names="404"),
    # ... and named to grpc-init with -ready-addr: the question the exec probe's -addr asks.
    "http-404-ready-addr": State(peer_404, gate=lambda port: ["-ready-addr", f"127.0.0.1:{port}"],
                                 ready="[grpc-init] not ready yet: ", ready_names="404"),
    # Its Watch answers (so it was ready), its Check never does.
    "hung": State(lambda port, cert: go_server("-delay", "60s", listen=f"127.0.0.1:{port}")),
    # The agent is given no -ready-tls and finds TLS by trying; the exec probe's wrong flags
    # are none (plaintext against a TLS-only server).
    "tls-only": State(tls_server, right_flags=lambda cert: ["-tls", "-tls-ca-cert", str(cert[0]), "-tls-server-name", "localhost"],
                      wrong_flags=lambda cert: []),
    "draining": State(lambda port, cert: go_server(listen=f"127.0.0.1:{port}"), gate=lambda port: ["-drain-delay", "1h"],
                      drain=True),
    # Named with -ready-addr, nothing listens there: no connection, the probe's exit 2.
    "refused": State(lambda port, cert: ["sleep", "3600"], gate=lambda port: ["-ready-addr", f"127.0.0.1:{port}"],
                     ready="[grpc-init] not ready yet: ", ready_names="connection refused"),
}

RPC = "error: health rpc failed: rpc error: code = "
SERVING_LINE = "status: SERVING"
UNHEALTHY = 'service unhealthy (responded with "NOT_SERVING")'
NOT_FOUND = "code = NotFound desc = unknown service"
HTTP_404 = "code = Unimplemented desc = unexpected HTTP status code received from server: 404"
HUNG = f"timeout: health rpc did not complete within {TIMEOUT}"
NOT_HEALTH = "does not implement"  # the reference's words for UNIMPLEMENTED: a 404 is not that
PLAINTEXT_SERVER = Cell(2, "(is the server speaking plaintext? try without -tls)", verdict=False)  # -tls against plaintext

# state -> edge -> how that edge renders the state's one verdict.
VERDICTS = {
    "serving": {
        "local": Cell(0, SERVING_LINE), "readyz": Cell(200, "SERVING"), "livez": Cell(200, "SERVING"),
        "check": Cell("SERVING", ""), "exec": Cell(0, SERVING_LINE), "exec-wrong-flags": PLAINTEXT_SERVER,
    },
    "not-serving": {
        "local": Cell(4, UNHEALTHY), "readyz": Cell(503, "NOT_SERVING"), "livez": Cell(200, "NOT_SERVING"),
        "check": Cell("NOT_SERVING", ""), "exec": Cell(4, UNHEALTHY), "exec-wrong-flags": PLAINTEXT_SERVER,
    },
    # NOT_FOUND is the health service's answer: alive (livez 200), not ready, an RPC failure.
    "unknown-service": {
        "local": Cell(3, RPC + "NotFound desc = unknown service"), "readyz": Cell(503, NOT_FOUND),
        "livez": Cell(200, NOT_FOUND), "check": Cell("NOT_FOUND", "unknown service"),
        "exec": Cell(3, RPC + "NotFound desc = unknown service"), "exec-wrong-flags": PLAINTEXT_SERVER,
    },
    # Named with -ready-addr, a server answering 404 is the server: its Check failed, an RPC
    # failure (exit 3) naming the 404, and not alive. The endpoint's own gRPC answer is
    # UNAVAILABLE naming it: passing on an UNIMPLEMENTED the agent concluded would tell the
    # endpoint's client "no health service here".
    "http-404-ready-addr": {
        "local": Cell(3, HTTP_404, NOT_HEALTH), "readyz": Cell(503, HTTP_404, NOT_HEALTH),
        "livez": Cell(503, HTTP_404, NOT_HEALTH), "check": Cell("UNAVAILABLE", HTTP_404, NOT_HEALTH),
        "exec": Cell(3, RPC + HTTP_404[len("code = "):]), "exec-wrong-flags": PLAINTEXT_SERVER,
    },
    # Found by looking, a listener answering 404 is not taken for the gRPC server: grpc-init has
    # none to ask (exit 2), and says why, naming the 404. The exec probe pointed at that listener
    # asks a server grpc-init did not choose.
    "http-404": {
        "local": Cell(2, "404", NOT_HEALTH), "readyz": Cell(503, "404", NOT_HEALTH),
        "livez": Cell(503, "404", NOT_HEALTH), "check": Cell("UNAVAILABLE", "404", NOT_HEALTH),
        "exec": Cell(3, RPC + HTTP_404[len("code = "):], verdict=False), "exec-wrong-flags": PLAINTEXT_SERVER,
    },
    "hung": {
        "local": Cell(3, HUNG), "readyz": Cell(503, "deadline exceeded"), "livez": Cell(503, "deadline exceeded"),
        "check": Cell("DEADLINE_EXCEEDED", "deadline exceeded"), "exec": Cell(3, HUNG), "exec-wrong-flags": PLAINTEXT_SERVER,
    },
    "tls-only": {
        "local": Cell(0, SERVING_LINE), "readyz": Cell(200, "SERVING"), "livez": Cell(200, "SERVING"),
        "check": Cell("SERVING", ""), "exec": Cell(0, SERVING_LINE),
        "exec-wrong-flags": Cell(2, "a TLS server does this to plaintext clients (try -tls)", verdict=False),
    },
    # No connection can be made: a connection failure (exit 2) on every edge, never an RPC failure.
    "refused": {
        "local": Cell(2, "connection refused"), "readyz": Cell(503, "connection refused"),
        "livez": Cell(503, "connection refused"), "check": Cell("UNAVAILABLE", "connection refused"),
        "exec": Cell(2, "connection refused"), "exec-wrong-flags": Cell(2, "connection refused", verdict=False),
    },
    # grpc-init drains; the server still serves, and says so to whoever asks it directly.
    "draining": {
        "local": Cell(4, UNHEALTHY), "readyz": Cell(503, "draining"), "livez": Cell(200, "SERVING"),
        "check": Cell("NOT_SERVING", ""), "exec": Cell(0, SERVING_LINE, verdict=False),
        "exec-wrong-flags": PLAINTEXT_SERVER,
    },
}
assert set(VERDICTS) == set(STATES) and all(set(row) == set(EDGES) for row in VERDICTS.values())


class Scene:
    """grpc-init and its server in one state; each edge asked once, its answer kept for every
    test that compares it."""

    def __init__(self, name, bindir, certificate):
        self.name, self.state, self.bindir, self.certificate = name, STATES[name], bindir, certificate
        self.answers = {}

    def start(self):
        self.port, self.health = free_port(), free_port()
        state = self.state
        gate = ["-v", "-health-addr", f"127.0.0.1:{self.health}", "-health-timeout", TIMEOUT, *state.gate(self.port)]
        self.proc, self.out, self.log = launch(self.bindir, "pid1", gate, state.command(self.port, self.certificate))
        deadline = time.monotonic() + 20
        while not ((line := self.log.next(deadline)).startswith(state.ready) and state.ready_names in line):
            pass
        if state.drain:
            signal_supervisor(self.proc, signal.SIGTERM)
            self.log.until("[grpc-init] draining: ", time.monotonic() + 10)

    def ask(self, edge):
        if edge not in self.answers:
            self.answers[edge] = getattr(self, "ask_" + edge.replace("-", "_"))()
        return self.answers[edge]

    def service_args(self):
        return ["-service", self.state.service] if self.state.service else []

    def query(self):
        return f"?service={self.state.service}" if self.state.service else ""

    def ask_local(self):
        r = probe_inside(self.bindir, self.proc, *self.service_args(), "-rpc-timeout", TIMEOUT)
        return r.returncode, first_line(r.stderr)

    def exec_probe(self, flags):
        r = subprocess.run([str(self.bindir / "grpc_health_probe"), "-addr", f"127.0.0.1:{self.port}", *flags,
                            *self.service_args(), "-rpc-timeout", TIMEOUT], capture_output=True, text=True, timeout=15)
        return r.returncode, first_line(r.stderr)

    def ask_exec(self):
        return self.exec_probe(self.state.right_flags(self.certificate))

    def ask_exec_wrong_flags(self):
        return self.exec_probe(self.state.wrong_flags(self.certificate))

    def ask_readyz(self):
        return get(self.health, "/readyz" + self.query())

    def ask_livez(self):
        return get(self.health, "/livez" + self.query())

    def ask_check(self):
        with grpc.insecure_channel(f"127.0.0.1:{self.health}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Check.future(health_pb2.HealthCheckRequest(service=self.state.service))
            try:
                status = call.result(timeout=CHECK_WAIT).status
                return health_pb2.HealthCheckResponse.ServingStatus.Name(status), ""
            except grpc.FutureTimeoutError:
                call.cancel()
                return f"no answer within {CHECK_WAIT}s", ""
            except grpc.RpcError as e:
                return e.code().name, e.details() or ""


def first_line(text):
    return (text.splitlines() or [""])[0]


def signal_supervisor(proc, signo):
    os.kill(supervisor_pid(proc, "pid1"), signo)


def renders(cell, answer):
    code, text = answer
    return code == cell.code and cell.names in text and not (cell.never and cell.never in text)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, and its key: one openssl command."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2"],
                   check=True, capture_output=True, timeout=30)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module", params=list(STATES))
def scene(request, bindir, certificate):
    s = Scene(request.param, bindir, certificate)
    try:
        s.start()
        yield s
    finally:
        if hasattr(s, "proc"):
            stop(s.proc, "pid1")  # during the drain, a second SIGTERM is passed on at once


@pytest.mark.parametrize("edge", EDGES)
def test_each_edge_renders_the_one_verdict(scene, edge):
    cell = VERDICTS[scene.name][edge]
    answer = scene.ask(edge)
    print(f"\nCELL {scene.name} | {edge} | {'verdict' if cell.verdict else 'not grpc-init'} | {answer!r}")
    assert renders(cell, answer), f"{scene.name}, {edge}: expected {cell}, got {answer!r}"


def test_the_probe_with_and_without_addr_names_the_same_cause(scene):
    """The probe's first line through the local socket and with -addr, where both are the
    verdict: the same exit code, and the line that names the cause names it in both."""
    local, exec_ = VERDICTS[scene.name]["local"], VERDICTS[scene.name]["exec"]
    if not exec_.verdict:
        pytest.skip("the exec probe asks the server, not grpc-init")
    a, e = scene.ask("local"), scene.ask("exec")
    print(f"\nSAME {scene.name} | local {a!r} | exec {e!r}")
    assert a[0] == e[0], f"{scene.name}: exit {a[0]} through grpc-init, {e[0]} with -addr: {a[1]!r} / {e[1]!r}"
    assert local.names in a[1] and local.names in e[1], f"{scene.name}: {a[1]!r} / {e[1]!r}"
