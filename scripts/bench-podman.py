#!/usr/bin/env python3
"""The probe as the node pays for it: `podman exec CONTAINER /bin/grpc_health_probe ...` (what an
exec probe costs: the runtime's exec machinery around the probe) against the same Check run
directly on the host, and against the native probes kubelet sends to grpc-init's health port
(-health-addr: `GET /readyz`, and a gRPC Check over h2c, each on a new connection, each
answered from a fresh Check of the server), over loopback, in the same run. Wall time is the
median per probe; CPU is the whole machine's busy time (from /proc/stat) per probe, the
runtime's processes and the client's included.

Usage: scripts/bench-podman.py [RUNS]     (root; after a release build and scripts/install-deps.sh)
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import importlib.util
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds():
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # all but idle and iowait


def timed(probe):
    """`probe` is an argv to run, or a function to call."""
    walls = []
    before = busy_seconds()
    for _ in range(RUNS):
        start = time.monotonic()
        if callable(probe):
            probe()
        else:
            subprocess.run(probe, check=True, capture_output=True)
        walls.append(time.monotonic() - start)
    return statistics.median(walls) * 1000, (busy_seconds() - before) / RUNS * 1000


def endpoint_clients():
    spec = importlib.util.spec_from_file_location("bench_endpoint", ROOT / "scripts/bench-endpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.http_probe, module.grpc_probe


def main():
    work = Path(tempfile.mkdtemp())
    subprocess.run([str(ROOT / "scripts/image-context.sh"), str(work / "context"), str(ROOT / ".build/peers/goserver")], check=True)
    podman = ["podman", "--root", str(work / "root"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    subprocess.run([*podman, "build", "-q", "-f", str(ROOT / "docker/Dockerfile.release"), "-t", "localhost/bench:latest",
                    str(work / "context")], check=True, capture_output=True)
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port, health = ports
    subprocess.run([*podman, "run", "-d", "--name", "bench", "--network", "host", "-e", f"GRPC_INIT_HEALTH_ADDR=127.0.0.1:{health}",
                    "--ulimit", "nofile=4096:4096", "--ulimit",
                    "nproc=4096:4096", "localhost/bench:latest", "/server", "-addr", f"127.0.0.1:{port}"], check=True, capture_output=True)
    try:
        probe = ["/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}"]
        deadline = time.monotonic() + 20
        while subprocess.run([*podman, "exec", "bench", *probe], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the container's server did not start")
            time.sleep(0.1)
        host = work / "host"
        host.mkdir()
        (host / "grpc_health_probe").symlink_to(ROOT / ".build/release/grpc-init")
        print(f"{'probe':44} {'wall ms':>8} {'CPU ms':>8}   (medians of {RUNS}; CPU: the machine's, per probe)")
        http_probe, grpc_probe = endpoint_clients()
        for name, argv in [("podman exec CONTAINER /bin/grpc_health_probe", [*podman, "exec", "bench", *probe]),
                           ("grpc_health_probe on the host", [str(host / "grpc_health_probe"), *probe[1:]]),
                           ("native: GET /readyz on the health port", lambda: http_probe(health)),
                           ("native: gRPC Check on the health port", lambda: grpc_probe(health))]:
            wall, cpu = timed(argv)
            print(f"{name:44} {wall:8.2f} {cpu:8.2f}")
    finally:
        subprocess.run([*podman, "rm", "-f", "bench"], capture_output=True)


if __name__ == "__main__":
    main()
