#!/usr/bin/env python3
"""How soon the readiness gate sees a change: grpc-init supervising a grpc-go server that
flips its health on command (-control) and records the wall-clock instant of each flip; the
time until grpc-init's log line for it is read here. Median of N flips to SERVING (default 50)
with Health/Watch, and of N/5 with the Check fallback (-no-watch, -ready-interval 100ms),
where the flip comes right after a Check (the worst case): one interval.

Usage: scripts/bench-readiness.py [N]     (after scripts/install-deps.sh and a release build)
"""
import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50


class Lines:
    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""

    def until(self, prefix, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if line.decode().startswith(prefix):
                    return line.decode(), time.time_ns()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SystemExit(f"no {prefix!r} line in time")
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise SystemExit("grpc-init exited")
                self.buffer += chunk


def flips(gate_args, server_args, count):
    proc = subprocess.Popen([str(ROOT / ".build/release/grpc-init"), *gate_args, "--", str(ROOT / ".build/peers/goserver"),
                             "-addr", "127.0.0.1:0", "-control", *server_args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, log = Lines(proc.stdout.fileno()), Lines(proc.stderr.fileno())
    try:
        log.until("[grpc-init] ready: ")
        latencies = []
        for _ in range(count):
            proc.stdin.write(b"SET - NOT_SERVING\n")
            proc.stdin.flush()
            log.until("[grpc-init] health: NOT_SERVING")
            proc.stdin.write(b"SET - SERVING\n")
            proc.stdin.flush()
            flipped = int(out.until("SET - SERVING ")[0].split()[3])
            _, seen = log.until("[grpc-init] health: SERVING")
            latencies.append((seen - flipped) / 1e6)
        return latencies
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=10)


def main():
    watch = flips([], [], N)
    check = flips(["-ready-interval", "100ms"], ["-no-watch"], max(1, N // 5))
    print(f"{'readiness seen after the flip':34} {'median ms':>10} {'max ms':>8} {'flips':>6}")
    print(f"{'Health/Watch':34} {statistics.median(watch):10.2f} {max(watch):8.2f} {len(watch):6d}")
    print(f"{'Check every 100ms (no Watch)':34} {statistics.median(check):10.2f} {max(check):8.2f} {len(check):6d}")


if __name__ == "__main__":
    main()
