#!/usr/bin/env python3
"""The idle supervisor: resident memory and wakeups (context switches) over 10 idle seconds,
grpc-init beside tini-static, each supervising `sleep`, and grpc-init after its readiness gate
passed on a grpc-go server (found with no flags, plaintext and TLS-only), with its health
agent's figures beside it. Under `sleep` the agent looks for a listener once a second.

The measurement starts once each supervisor is idle: its child running and, for grpc-init, its
poll(2) waiting with no timeout. grpc-init releases its start-up code pages after one second
without events, so that wait begins one wake-up after the last event. RSS is VmRSS at the end:
the released pages stay in the page cache (they count towards a memory cgroup's page cache,
not towards the process).

With --list, two rows instead, each gated on the same grpcio server listing three services, all
SERVING (Tests/peers/listserver.py, Health/List of its own): -ready-service '*' (a List, then a
Watch for each listed service) and -ready-service for one of them (one Watch).

Usage: scripts/bench-idle.py [--list] [SECONDS]     (after scripts/install-deps.sh --bench and a release build;
       BENCH_BASELINE=BINARY adds a row for another grpc-init binary)
"""
import json
import os
import subprocess
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIST = "--list" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--list"]
SECONDS = float(ARGS[0]) if ARGS else 10.0


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


def children(pid):
    return open(f"/proc/{pid}/task/{pid}/children").read().split()


def command(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode()
    except OSError:
        return ""


def agent_of(pid):
    agents = [c for c in children(pid) if command(c) == "grpc-init-agent"]
    return int(agents[0]) if agents else None


def polling_forever(pid):
    """Waiting in poll(2) with no timeout (x86_64: syscall 7, timeout -1)."""
    fields = open(f"/proc/{pid}/syscall").read().split()
    return fields[:1] == ["7"] and fields[3] == "0xffffffff"


def idle(pid, name):
    """The child runs and the supervisor waits in poll(2) with no timeout, after releasing its
    code pages; a gated one's agent waits likewise, once the server is SERVING."""
    if len([c for c in children(pid) if command(c) != "grpc-init-agent"]) != 1:
        return False
    if not name.startswith("grpc-init"):
        return True
    if "gated" in name:
        agent = agent_of(pid)
        if agent is None or not polling_forever(agent):
            return False
    return polling_forever(pid)


def main():
    binary = str(ROOT / ".build/release/grpc-init")
    server = str(ROOT / ".build/peers/goserver")
    pki = tempfile.mkdtemp(prefix="bench-idle-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", f"{pki}/key.pem", "-out", f"{pki}/cert.pem"],
                   check=True, capture_output=True, timeout=60)
    candidates = [("grpc-init", [binary, "--", "sleep", "1000"]),
                  ("grpc-init -ready=false", [binary, "-ready=false", "--", "sleep", "1000"]),
                  ("grpc-init, gated", [binary, "--", server, "-addr", "127.0.0.1:0"]),
                  ("grpc-init, gated TLS", [binary, "--", server, "-addr", "127.0.0.1:0",
                                            "-tls-cert", f"{pki}/cert.pem", "-tls-key", f"{pki}/key.pem"])]
    baseline = os.environ.get("BENCH_BASELINE")  # another grpc-init binary, for a before/after row
    if baseline:
        candidates.append(("grpc-init, baseline", [baseline, "--", "sleep", "1000"]))
    for tini in ("/usr/bin/tini-static", "/usr/bin/tini"):
        if Path(tini).exists():
            candidates.append((Path(tini).name, [tini, "--", "sleep", "1000"]))
            break
    print(f"{'supervisor':24} {'RSS MiB':>8} {'wakeups in ' + str(int(SECONDS)) + ' s':>16}"
          f" {'agent RSS MiB':>14} {'agent wakeups':>14}")
    if LIST:
        # One row at a time, so that the two do not compete for the local probe socket (one name
        # per network namespace: the first grpc-init takes it).
        python = ROOT / ".venv/bin/python"
        listed = [str(python if python.exists() else sys.executable), str(ROOT / "Tests/peers/listserver.py"),
                  "--services", json.dumps([["a", "SERVING"], ["b", "SERVING"], ["c", "SERVING"]])]
        measure([("grpc-init, gated '*' (3)", [binary, "-ready-service", "*", "--", *listed])])
        measure([("grpc-init, gated one", [binary, "-ready-service", "a", "--", *listed])])
    else:
        measure(candidates)


def measure(candidates):
    """Starts each candidate, waits until every one is idle, and prints its row after SECONDS."""
    procs = [(name, subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
             for name, argv in candidates]
    try:
        deadline = time.monotonic() + 10
        for name, p in procs:
            while not idle(p.pid, name):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not settle")
                time.sleep(0.01)
        agents = {name: agent_of(p.pid) for name, p in procs if name.startswith("grpc-init")}
        before = {name: switches(p.pid) for name, p in procs}
        before_agents = {name: switches(a) for name, a in agents.items() if a}
        time.sleep(SECONDS)  # the measurement itself: idle time
        for name, p in procs:
            rss = int(status(p.pid)["VmRSS"].split()[0]) / 1024
            row = f"{name:24} {rss:8.2f} {switches(p.pid) - before[name]:16d}"
            agent = agents.get(name)
            if agent:
                agent_rss = int(status(agent)["VmRSS"].split()[0]) / 1024
                row += f" {agent_rss:14.2f} {switches(agent) - before_agents[name]:14d}"
            print(row, flush=True)
    finally:
        # SIGTERM, which each supervisor forwards to its child; SIGKILL would orphan the child.
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
