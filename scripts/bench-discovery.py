#!/usr/bin/env python3
"""What discovery costs the health agent while it searches: grpc-init over a child that serves
no gRPC, a tree of N processes (100, 500) holding L silent listeners (0, 5, 200: sockets that
listen and never accept, held by every process as a prefork pool's workers hold theirs). The
agent (grpc-init's child named grpc-init-agent) is measured over SECONDS of its first 30 s,
when it scans every 50 ms: its CPU time (utime+stime from /proc/PID/stat, and the scheduler's
run time from /proc/PID/schedstat, finer) as a share of one core. Medians over RUNS runs, one
column per binary given (default: this tree's release build). As root, each run has a network
namespace of its own (`unshare --net`, loopback up), as in a container: listeners that other
work on the machine opens and closes are new sockets the agent would classify.

Usage: scripts/bench-discovery.py [-r RUNS] [-s SECONDS] [--host-net] [BINARY ...]
       (after scripts/install-deps.sh and a release build)
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "Tests" / "peers" / "process_tree.py"
TICK = os.sysconf("SC_CLK_TCK")
SCENARIOS = [(100, 0), (100, 5), (100, 200), (500, 0), (500, 5), (500, 200)]


def command(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode()
    except OSError:
        return ""


def agent_of(pid):
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return None
    agents = [int(c) for c in children if command(c) == "grpc-init-agent"]
    return agents[0] if agents else None


def cpu(pid):
    """(utime+stime in seconds, run time from schedstat in seconds)."""
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    run = int(open(f"/proc/{pid}/schedstat").read().split()[0])
    return ticks / TICK, run / 1e9


def measure(binary, processes, silent, seconds, own_net):
    """The agent's share of a core (stat, schedstat) over `seconds`, a second after the tree runs."""
    argv = [binary, "--", sys.executable, str(TREE), "--processes", str(processes), "--silent", str(silent)]
    if own_net:
        # unshare and sh exec in turn: the process started here is grpc-init.
        argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode()
        if not line.startswith("READY"):
            raise SystemExit(f"{binary}: the tree did not start ({line!r})")
        deadline = time.monotonic() + 10
        while (agent := agent_of(proc.pid)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{binary}: no agent")
            time.sleep(0.01)
        time.sleep(1.0)  # the walks that classify the tree's listeners, which the window leaves out
        before = cpu(agent)
        start = time.monotonic()
        time.sleep(seconds)  # the measurement itself
        after = cpu(agent)
        elapsed = time.monotonic() - start
        return tuple((a - b) / elapsed * 100 for a, b in zip(after, before))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-r", "--runs", type=int, default=3)
    parser.add_argument("-s", "--seconds", type=float, default=5.0)
    parser.add_argument("--host-net", action="store_true", help="run in this network namespace")
    parser.add_argument("binaries", nargs="*", default=[str(ROOT / ".build" / "release" / "grpc-init")])
    args = parser.parse_args()
    own_net = not args.host_net and os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")
    print(f"the agent's CPU while it searches, % of one core: utime+stime / schedstat, "
          f"medians of {args.runs} runs of {args.seconds:g} s, "
          f"{'a network namespace of its own' if own_net else 'this network namespace'}")
    for i, binary in enumerate(args.binaries):
        print(f"  [{i + 1}] {binary}")
    print(f"{'processes':>9} {'listeners':>9} " + " ".join(f"{'[' + str(i + 1) + ']':>15}" for i in range(len(args.binaries))))
    for processes, silent in SCENARIOS:
        cells = []
        for binary in args.binaries:
            runs = [measure(binary, processes, silent, args.seconds, own_net) for _ in range(args.runs)]
            stat = statistics.median(r[0] for r in runs)
            sched = statistics.median(r[1] for r in runs)
            cells.append(f"{stat:6.2f} / {sched:6.2f}")
        print(f"{processes:9} {silent:9} " + " ".join(f"{c:>15}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
