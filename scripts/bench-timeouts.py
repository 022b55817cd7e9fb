#!/usr/bin/env python3
"""How closely the probe keeps its timeouts: against a server that accepts and never answers
(connect phase) and one that never answers the Check (RPC phase), the wall time past a 300 ms
timeout, process start-up included, medians and maxima of RUNS probes.

Usage: scripts/bench-timeouts.py [RUNS]     (after a release build and scripts/install-deps.sh)
"""
import importlib.util
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
sys.path.insert(0, str(ROOT / "Tests" / "integration"))
from conftest import raw_peer  # noqa: E402  (the hand-written peer's stalls)

spec = importlib.util.spec_from_file_location("bench_probe", ROOT / "scripts" / "bench-probe.py")
bench_probe = importlib.util.module_from_spec(spec)
sys.argv, arguments = sys.argv[:1], sys.argv
spec.loader.exec_module(bench_probe)
sys.argv = arguments


def main():
    binary = str(ROOT / ".build" / "release" / "grpc-init")
    print(f"{'phase':8} {'past the timeout, median':>25} {'max':>8}   ({RUNS} probes, -*-timeout 300ms)")
    for phase, mode, flag in [("connect", "stall", "-connect-timeout"), ("rpc", "stall-rpc", "-rpc-timeout")]:
        with raw_peer(mode) as port:
            out = subprocess.run([str(bench_probe.launcher()), "-n", str(RUNS), binary, "grpc_health_probe", "-addr", f"127.0.0.1:{port}",
                                  flag, "300ms"], capture_output=True, text=True, check=True)
        rows = [list(map(int, line.split())) for line in out.stdout.splitlines()]
        if any(r[3] != {"connect": 2, "rpc": 3}[phase] for r in rows):
            raise SystemExit(f"{phase}: unexpected exit codes {[r[3] for r in rows]}")
        past = [r[0] / 1000 - 300 for r in rows]
        print(f"{phase:8} {statistics.median(past):22.2f} ms {max(past):5.2f} ms")


if __name__ == "__main__":
    main()
