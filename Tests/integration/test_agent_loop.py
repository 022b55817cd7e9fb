"""The agent's one event loop: nothing it waits for (a silent listener, a stalled TLS handshake,
a Workload API that does not answer) keeps the health endpoint from answering, and a silent
listener does not delay finding the gRPC server behind it.

Each wait is made to last 10 s, and every answer must come within ANSWER_WITHIN: an agent that
waited on it would miss that by seconds, while a loaded machine cannot. How fast the answers
are is not asserted here: scripts/bench-agent-loop.py measures it (median and slowest)."""
import http.client
import os
import socket
import sys
import threading
import time

import pytest

from conftest import PEERS
from peers import free_port
from test_readiness import go_server, launch, stop

#: Every probe answered within this, whatever the agent is doing.
ANSWER_WITHIN = 2.0
#: How long each thing the agent waits on stalls: the gate's connect and RPC timeouts.
STALL = ["-ready-connect-timeout", "10s", "-ready-rpc-timeout", "10s"]


class Prober(threading.Thread):
    """GET /readyz every 20 ms until stopped: (sent at, seconds to answer, status, body) each."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.answers = []
        self.failures = []
        self.done = threading.Event()
        # Set by the first 200: the server is ready, as the endpoint sees it.
        self.served = threading.Event()

    def run(self):
        while not self.done.is_set():
            sent = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2 * ANSWER_WITHIN)
                conn.request("GET", "/readyz")
                r = conn.getresponse()
                body = r.read().decode().rstrip("\n")
                self.answers.append((sent, time.monotonic() - sent, r.status, body))
                if r.status == 200:
                    self.served.set()
                conn.close()
            except OSError as e:
                self.failures.append((sent, repr(e)))
            self.done.wait(0.02)

    def stop(self):
        self.done.set()
        self.join(timeout=5)


def await_listening(port, timeout=10):
    """Once grpc-init has bound the health port (before its child starts): connects succeed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except ConnectionRefusedError:
            time.sleep(0.005)  # grpc-init's start-up, which nothing signals; bounded
    raise TimeoutError(f"nothing listens on {port}")


def slowest(answers):
    return max(a[1] for a in answers)


def probed_throughout(bindir, gate, command, env=None, during=None):
    """grpc-init with the endpoint on and `gate`, its /readyz probed every 20 ms while `during`
    runs (given the child's and grpc-init's line readers and the prober; what it returns is
    returned too), or for 1.5 s. Every probe answered, each within ANSWER_WITHIN."""
    health = free_port()
    proc, lines, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{health}", *STALL, *gate], command, env=env)
    prober = Prober(health)
    outcome = None
    try:
        await_listening(health)
        prober.start()
        if during:
            outcome = during(lines, log, prober)
        else:
            prober.done.wait(1.5)  # the measurement's window: nothing ends it sooner
    finally:
        prober.stop()
        stop(proc, "subreaper")
    assert prober.failures == []
    assert len(prober.answers) >= 20, prober.answers
    assert slowest(prober.answers) < ANSWER_WITHIN, sorted(a[1] for a in prober.answers)[-5:]
    return prober.answers, outcome


def test_a_silent_listener_delays_neither_the_endpoint_nor_discovery(bindir):
    """The child listens on a port that never answers, then 0.8 s later starts its gRPC server.
    Every /readyz meanwhile is answered (503, with why), and the server is found soon after it
    listens, not after the silent port's connect timeout. The tree is ready once the silent
    port (a server still starting, for all the agent knows) has been judged: at that timeout,
    said meanwhile as what readiness waits for."""
    def until_served(lines, log, prober):
        silent = int(lines.until("SILENT ", time.monotonic() + 20).split()[1])
        lines.until("READY ", time.monotonic() + 20)
        listening = time.monotonic()
        log.until("[grpc-init] health: found the gRPC server at ", time.monotonic() + 20)
        seen = time.monotonic() - listening
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        assert prober.served.wait(5), "the endpoint says 200 once the gate is ready"
        return seen, silent

    command = [sys.executable, str(PEERS / "silent_first.py"), "--after", "0.8", "--", *go_server()]
    answers, (seen, silent) = probed_throughout(bindir, ["-ready-connect-timeout", "3s"], command, during=until_served)
    waiting = [a for a in answers if a[2] == 503]
    assert waiting and all(a[3] for a in waiting), "503 with the reason"
    held = f"127.0.0.1:{silent}: waiting for the server's first health answer"
    assert any(held in a[3] for a in waiting), [a[3] for a in waiting][-3:]
    assert seen < ANSWER_WITHIN, f"found {seen * 1000:.0f} ms after the server listened"


def test_a_stalled_tls_handshake_does_not_stop_the_endpoint(bindir, pki):
    """-ready-addr at a TLS server that takes the connection and never answers the ClientHello:
    the dial stalls for the connect timeout (10 s), and /readyz is answered throughout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        answers, _ = probed_throughout(bindir, ["-ready-addr", f"127.0.0.1:{silent.getsockname()[1]}", "-ready-tls",
                                             "-ready-tls-ca-cert", str(pki.ca)], go_server())
    assert all(a[2] == 503 and a[3] for a in answers)


def test_a_workload_api_that_does_not_answer_does_not_stop_the_endpoint(bindir, tmp_path):
    """-ready-spiffe with SPIFFE_ENDPOINT_SOCKET at a socket that never answers: the fetch
    waits (for the RPC timeout, 10 s), and /readyz is answered throughout, saying what it waits for."""
    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(str(path))
        silent.listen(64)
        answers, _ = probed_throughout(bindir, ["-ready-spiffe"], go_server(),
                                    env=dict(os.environ, SPIFFE_ENDPOINT_SOCKET=f"unix://{path}"))
    assert all(a[2] == 503 for a in answers)
    assert any("SPIFFE" in a[3] or "X.509-SVID" in a[3] for a in answers), {a[3] for a in answers}
