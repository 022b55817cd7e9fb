#!/usr/bin/env python3
"""The health endpoint (-health-addr) against the exec probe, in the same run: grpc-init
supervising a grpc-go server with the endpoint on, then N probes of each kind from the host over
loopback, each on a new connection as kubelet makes them: `GET /readyz` (HTTP/1.1), and a gRPC
Check over h2c (a minimal hand-written client, so that the figure is the endpoint's and not a
client library's). Each answer includes a fresh Check of the child. Wall time is the median per
probe as the client sees it; the agent's CPU per probe comes from /proc/PID/schedstat (the
supervisor's and the child's are not included; the child's Check is the same in every row).
The exec probe is `grpc_health_probe -addr` run by a small C launcher (Tests/peers/measure):
its wall and CPU are the probe process's own. Then the agent's and supervisor's idle figures.

Usage: scripts/bench-endpoint.py [N]     (after scripts/install-deps.sh and a release build)
       BENCH_BASELINE=BINARY adds the same figures for another grpc-init binary, in the same run.
"""
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


CHECK = PREFACE + frame(4, 0, 0) + frame(1, 4, 1, literal(b":method", b"POST") + literal(b":scheme", b"http")
                                         + literal(b":path", b"/grpc.health.v1.Health/Check") + literal(b":authority", b"pod")
                                         + literal(b"content-type", b"application/grpc") + literal(b"te", b"trailers")) \
    + frame(0, 1, 1, b"\x00\x00\x00\x00\x00")
READYZ = b"GET /readyz HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe\r\nConnection: close\r\n\r\n"
METRICS = (b"GET /metrics HTTP/1.1\r\nHost: pod\r\nUser-Agent: Prometheus/2.42.0\r\nConnection: close\r\n"
           b"Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
           b"text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n")


def http_probe(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(READYZ)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    return data


def metrics_scrape(port):
    """A scrape as Prometheus asks for it (OpenMetrics preferred); no Check of the child."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(METRICS)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"# EOF\n"), data[:200]
    return data


def grpc_probe(port):
    """One Check on a new connection; returns once the trailers (HEADERS with END_STREAM) came."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(CHECK)
        data = b""
        serving = False
        while True:
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                length = int.from_bytes(data[:3], "big")
                ftype, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big")
                payload = data[9:9 + length]
                data = data[9 + length:]
                if ftype == 0 and stream == 1:
                    serving = payload == b"\x00\x00\x00\x00\x02\x08\x01"
                if ftype == 1 and stream == 1 and flags & 1:
                    assert serving
                    return
            chunk = s.recv(4096)
            assert chunk, "closed before the trailers"
            data += chunk


def metrics_or_none(port):
    """The scrape's bytes, or b"" from a build without /metrics (its row is left out)."""
    try:
        return metrics_scrape(port)
    except AssertionError:
        return b""


def cpu_ns(pid):
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def children(pid):
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def command(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(probe, port, agent):
    walls = []
    before = cpu_ns(agent)
    for _ in range(N):
        start = time.perf_counter_ns()
        probe(port)
        walls.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(walls), (cpu_ns(agent) - before) / N / 1e6


def main():
    binaries = [("this build", ROOT / ".build/release/grpc-init")]
    if os.environ.get("BENCH_BASELINE"):
        binaries.append(("baseline " + os.environ["BENCH_BASELINE"], Path(os.environ["BENCH_BASELINE"])))
    for label, binary in binaries:
        print(f"== {label}")
        bench(binary)


def bench(binary):
    health, app = free_port(), free_port()
    proc = subprocess.Popen([str(binary), "-health-addr", f"127.0.0.1:{health}", "--",
                             str(ROOT / ".build/peers/goserver"), "-addr", f"127.0.0.1:{app}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                http_probe(health)
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise SystemExit("the endpoint did not answer")
                time.sleep(0.02)
        agent = next(c for c in children(proc.pid) if command(c) == "grpc-init-agent")
        for probe in (http_probe, grpc_probe):  # warm up
            for _ in range(50):
                probe(health)
        print(f"{'probe (new connection each)':44} {'wall ms':>8} {'CPU ms':>8}   (medians of {N})")
        scrapes = [("GET /metrics (OpenMetrics, no Check)", metrics_scrape)] if b"# EOF" in metrics_or_none(health) else []
        for name, probe in [("GET /readyz on the health port", http_probe), ("gRPC Check on the health port (h2c)", grpc_probe)] + scrapes:
            wall, cpu = timed(probe, health, agent)
            print(f"{name:44} {wall:8.3f} {cpu:8.3f}   (CPU: the agent's)")
        measure = ROOT / ".build/peers/measure"
        out = subprocess.run([str(measure), "-n", str(min(N, 300)), str(binary), "grpc_health_probe",
                              "-addr", f"127.0.0.1:{app}"], capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.splitlines() if line.strip()]
        wall = statistics.median(int(r[0]) for r in rows) / 1000
        cpu = statistics.median(int(r[1]) for r in rows) / 1000
        print(f"{'exec of grpc_health_probe (the same Check)':44} {wall:8.3f} {cpu:8.3f}   (CPU: the probe process's)")
        # Idle with the endpoint on: no probe for 10 s.
        # The supervisor releases its code after a quiet second; the agent, with the endpoint on,
        # keeps its code for a minute (the figure is that of an agent between probes).
        time.sleep(2)  # the supervisor's release, which nothing here can await; bounded
        switches = {}
        for pid in (proc.pid, agent):
            s = dict(l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines())
            switches[pid] = int(s["voluntary_ctxt_switches"]) + int(s["nonvoluntary_ctxt_switches"])
        time.sleep(10)  # the measurement: idle time
        for name, pid in (("supervisor", proc.pid), ("agent, endpoint on", agent)):
            s = dict(l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines())
            woke = int(s["voluntary_ctxt_switches"]) + int(s["nonvoluntary_ctxt_switches"]) - switches[pid]
            print(f"idle 10 s: {name:33} {int(s['VmRSS'].split()[0]) / 1024:6.2f} MiB RSS, {woke} wakeups")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
