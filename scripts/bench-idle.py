#!/usr/bin/env python3
"""The idle supervisor: resident memory and wakeups (context switches) over 10 idle seconds,
grpc-init beside tini-static, each supervising `sleep`.

Usage: scripts/bench-idle.py [SECONDS]     (after scripts/install-deps.sh --bench and a release build)
"""
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def switches(pid):
    s = status(pid)
    return int(s["voluntary_ctxt_switches"]) + int(s["nonvoluntary_ctxt_switches"])


def main():
    candidates = [("grpc-init", [str(ROOT / ".build/release/grpc-init"), "--", "sleep", "1000"])]
    for tini in ("/usr/bin/tini-static", "/usr/bin/tini"):
        if Path(tini).exists():
            candidates.append((Path(tini).name, [tini, "--", "sleep", "1000"]))
            break
    procs = [(name, subprocess.Popen(argv)) for name, argv in candidates]
    try:
        # Settle: both have spawned sleep once their child appears.
        deadline = time.monotonic() + 5
        for _, p in procs:
            while time.monotonic() < deadline and not open(f"/proc/{p.pid}/task/{p.pid}/children").read().strip():
                time.sleep(0.01)
        before = {name: switches(p.pid) for name, p in procs}
        time.sleep(SECONDS)  # the measurement itself: idle time
        print(f"{'supervisor':14} {'RSS MiB':>8} {'wakeups in ' + str(int(SECONDS)) + ' s':>16}")
        for name, p in procs:
            rss = int(status(p.pid)["VmRSS"].split()[0]) / 1024
            print(f"{name:14} {rss:8.2f} {switches(p.pid) - before[name]:16d}")
    finally:
        # SIGTERM, which each supervisor forwards to its sleep; SIGKILL would orphan the sleep.
        for _, p in procs:
            p.terminate()
        for _, p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
