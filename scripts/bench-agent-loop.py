#!/usr/bin/env python3
"""What the health endpoint answers while the agent waits on something that does not answer,
and how soon a server behind a silent listener is found; for this build and, with
BENCH_BASELINE=BINARY, another one in the same run. Each scenario probes `GET /readyz` every
20 ms (each on a new connection, 2 s client timeout) and reports the probes sent, answered,
the median and slowest answer:

  silent listener   the child listens on a port that never answers, its gRPC server starts
                    0.8 s later; also "found": the server's READY line to grpc-init's "ready:"
  stalled TLS       -ready-addr -ready-tls at a port that takes the connection and never
                    answers the ClientHello (-ready-connect-timeout 500ms), for 1.5 s
  silent SPIFFE     -ready-spiffe with a Workload API socket that never answers, for 1.5 s
  start-up          (20 runs, no silent listener) the gRPC server starts listening 1.5 s in:
                    "found" is its READY line to grpc-init's "ready:" line

Usage: scripts/bench-agent-loop.py [RUNS]    (after scripts/install-deps.sh and a release build)
"""
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "integration"))
from conftest import GO_SERVER, PEERS, LineReader  # noqa: E402
from pki import PKI  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
STARTUP_RUNS = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def await_listening(port):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except ConnectionRefusedError:
            time.sleep(0.005)
    raise TimeoutError(port)


class Prober(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.answers, self.sent = port, [], 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.sent += 1
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                conn.getresponse().read()
                conn.close()
                self.answers.append(time.monotonic() - start)
            except OSError:
                pass
            self.done.wait(0.02)


def run(binary, gate, command, env=None, window=1.5, discover=False):
    health = free_port()
    proc = subprocess.Popen([binary, "-health-addr", f"127.0.0.1:{health}", *gate, "--", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = LineReader(proc), LineReader(proc, proc.stderr)
    prober = Prober(health)
    found = None
    try:
        await_listening(health)
        prober.start()
        if discover:
            out.until("READY ", time.monotonic() + 20)
            listening = time.monotonic()
            err.until("[grpc-init] ready: ", time.monotonic() + 20)
            found = time.monotonic() - listening
        else:
            time.sleep(window)
    finally:
        prober.done.set()
        prober.join(timeout=5)
        proc.terminate()
        proc.wait(timeout=15)
    return prober.sent, prober.answers, found


def main():
    binaries = [("this build", str(ROOT / ".build" / "release" / "grpc-init"))]
    if os.environ.get("BENCH_BASELINE"):
        binaries.append(("baseline", os.environ["BENCH_BASELINE"]))
    work = Path(tempfile.mkdtemp())
    pki = PKI(work / "pki")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    sock = work / "agent.sock"
    silent_unix = socket.socket(socket.AF_UNIX)
    silent_unix.bind(str(sock))
    silent_unix.listen(64)
    server = [str(GO_SERVER), "-addr", "127.0.0.1:0"]
    scenarios = [
        ("silent listener", [], [sys.executable, str(PEERS / "silent_first.py"), "--after", "0.8", "--", *server], None, True),
        ("stalled TLS", ["-ready-addr", f"127.0.0.1:{silent.getsockname()[1]}", "-ready-tls", "-ready-tls-ca-cert", str(pki.ca),
                         "-ready-connect-timeout", "500ms"], server, None, False),
        ("silent SPIFFE", ["-ready-spiffe"], server, dict(os.environ, SPIFFE_ENDPOINT_SOCKET=f"unix://{sock}"), False),
    ]
    scenarios.append(("start-up", [], [sys.executable, str(PEERS / "silent_first.py"), "--silent", "0", "--after", "1.5", "--", *server],
                      None, True))
    print(f"{RUNS} runs each (start-up: {STARTUP_RUNS}); /readyz every 20 ms; milliseconds")
    print(f"{'scenario':16} {'binary':11} {'sent':>5} {'answered':>8} {'median':>7} {'slowest':>8} {'found (median, max)':>20}")
    for name, gate, command, env, discover in scenarios:
        for label, binary in binaries:
            sent = answered = 0
            latencies, founds = [], []
            for _ in range(STARTUP_RUNS if name == "start-up" else RUNS):
                s, a, f = run(binary, gate, command, env=env, discover=discover)
                sent, answered, latencies = sent + s, answered + len(a), latencies + a
                if f is not None:
                    founds.append(f)
            med = statistics.median(latencies) * 1000 if latencies else float("nan")
            worst = max(latencies) * 1000 if latencies else float("nan")
            found = f"{statistics.median(founds) * 1000:.0f}, {max(founds) * 1000:.0f}" if founds else ""
            print(f"{name:16} {label:11} {sent:5} {answered:8} {med:7.2f} {worst:8.1f} {found:>20}")


main()
