#!/usr/bin/env python3
"""An orphan storm: what reaping costs the supervisor itself. A shell under the supervisor makes
N orphans (each `(true &)` leaves a `true` to be adopted and reaped); once all are reaped, the
supervisor's own CPU time and page faults are read from /proc (its children's are not counted).
Medians over RUNS runs, grpc-init beside tini-static (and BENCH_BASELINE, another grpc-init
binary, when set).

Usage: scripts/bench-orphans.py [ORPHANS [RUNS]]   (after scripts/install-deps.sh --bench and a release build)
"""
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORPHANS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
TICK = os.sysconf("SC_CLK_TCK")


def storm(supervisor):
    script = f"i=0; while [ $i -lt {ORPHANS} ]; do (true &); i=$((i+1)); done; echo DONE; read x"
    # tini adopts orphans outside PID 1 only with -s; grpc-init always does.
    flags = ["-s"] if "tini" in Path(supervisor).name else []
    proc = subprocess.Popen([supervisor, *flags, "--", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if proc.stdout.readline() != b"DONE\n":
            raise SystemExit(f"{supervisor}: the storm did not finish")
        deadline = time.monotonic() + 60
        while len(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()) > 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"{supervisor}: orphans left unreaped")
            time.sleep(0.01)
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK, int(fields[7])
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def main():
    rows = [("grpc-init", str(ROOT / ".build/release/grpc-init"))]
    if os.environ.get("BENCH_BASELINE"):
        rows.append(("baseline grpc-init", os.environ["BENCH_BASELINE"]))
    for tini in ("/usr/bin/tini-static", "/usr/bin/tini"):
        if Path(tini).exists():
            rows.append((Path(tini).name, tini))
            break
    print(f"{'supervisor':20} {'CPU s':>7} {'page faults':>12}   ({ORPHANS} orphans, medians of {RUNS} runs)")
    for name, binary in rows:
        results = [storm(binary) for _ in range(RUNS)]
        print(f"{name:20} {statistics.median(r[0] for r in results):7.2f} {statistics.median(r[1] for r in results):12.0f}")


if __name__ == "__main__":
    main()
