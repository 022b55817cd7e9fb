#!/usr/bin/env python3
"""The supervisor under a signal storm: Tests/peers/storm queueing a real-time signal at
grpc-init as fast as it can (for 10 s at most) while grpc-init has to act on time. Medians and
maxima over RUNS runs of each figure:

  grace   -grace 1s, a child that ignores SIGTERM: from SIGTERM sent to grpc-init to grpc-init's
          exit (the grace is due at 1 s)
  exit    a child that exits when told, printing the monotonic clock as it goes: from that
          instant to grpc-init's exit

grpc-init's exit is seen on a pidfd. Without a bounded batch of signals read per turn, either
figure would be the storm's 10 s. Rows for grpc-init as a subreaper, and as root also as PID 1
of a PID namespace (`unshare --pid --fork`); beside them tini-static (`-s`) when installed, for
the child's exit (tini has no grace).

Usage: scripts/bench-storm.py [RUNS]     (after scripts/install-deps.sh and a release build;
       BENCH_BASELINE=BINARY adds the rows of another grpc-init binary, in the same run)
"""
import os
import select
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
STORM = ROOT / ".build" / "peers" / "storm"
STORM_SIGNAL = signal.SIGRTMIN + 1

# Ignores SIGTERM and the storm's signal, says "ready"; on a line on its stdin prints the
# monotonic clock and exits 3.
CHILD = textwrap.dedent(f"""
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal({int(STORM_SIGNAL)}, signal.SIG_IGN)
    print("ready", flush=True)
    sys.stdin.readline()
    print(repr(time.monotonic()), flush=True)
    os._exit(3)
""")


class Lines:
    """Lines of a pipe, each awaited with a deadline."""

    def __init__(self, stream):
        self.fd, self.buffer = stream.fileno(), b""

    def next(self, timeout=20):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise SystemExit("no line in time")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise SystemExit("the process ended early")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def supervisor(proc, pid1):
    """grpc-init's pid: under unshare --fork, unshare's only child."""
    if not pid1:
        return proc.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            found = f.read().split()
        if found:
            return int(found[0])
        time.sleep(0.005)  # unshare's fork, which nothing signals; bounded
    raise SystemExit("unshare started no child")


def exited_at(proc, timeout=15):
    pidfd = os.pidfd_open(proc.pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise SystemExit("grpc-init did not exit in time")
        return time.monotonic()
    finally:
        os.close(pidfd)


def one(binary, pid1, case):
    """One run: the figure in seconds."""
    if "tini" in Path(binary).name:
        args = ["-s", "--", sys.executable, "-c", CHILD]
    else:
        args = ["-ready=false", *(["-grace", "1s"] if case == "grace" else []), "--", sys.executable, "-c", CHILD]
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if pid1 else []
    proc = subprocess.Popen([*prefix, binary, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    storm = None
    try:
        lines = Lines(proc.stdout)
        assert lines.next() == "ready"
        target = supervisor(proc, pid1)
        storm = subprocess.Popen([str(STORM), str(target), str(int(STORM_SIGNAL)), "10"], stdout=subprocess.PIPE)
        assert Lines(storm.stdout).next() == "storming"
        if case == "grace":
            start = time.monotonic()
            os.kill(target, signal.SIGTERM)
        else:
            proc.stdin.write(b"exit\n")
            proc.stdin.flush()
            start = float(lines.next())
        return exited_at(proc) - start
    finally:
        for p in (storm, proc):
            if p and p.poll() is None:
                p.kill()
            if p:
                p.wait(timeout=15)


def main():
    if not STORM.exists():
        raise SystemExit(f"{STORM} is missing: scripts/test.sh builds it")
    binaries = [("grpc-init", str(ROOT / ".build" / "release" / "grpc-init"))]
    if os.environ.get("BENCH_BASELINE"):
        binaries.append(("baseline", os.environ["BENCH_BASELINE"]))
    if Path("/usr/bin/tini-static").exists():
        binaries.append(("tini-static", "/usr/bin/tini-static"))
    modes = [False, True] if os.geteuid() == 0 else [False]
    print(f"{'':34} {'median':>9} {'max':>9}   (over {RUNS} runs)")
    for name, binary in binaries:
        for pid1 in modes:
            for case, scale, unit in (("grace", 1, "s"), ("exit", 1000, "ms")):
                if case == "grace" and "tini" in name:
                    continue
                figures = [one(binary, pid1, case) * scale for _ in range(RUNS)]
                label = f"{name} {'PID 1' if pid1 else 'subreaper'}, {case}"
                print(f"{label:34} {statistics.median(figures):7.3f} {unit:1} {max(figures):7.3f} {unit:1}", flush=True)


if __name__ == "__main__":
    main()
