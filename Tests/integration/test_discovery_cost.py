"""What discovery costs the health agent while it searches: the tree is scanned every 50 ms
for the first 30 s, and a child of many processes (a prefork pool) that has nothing new to
find costs a scan no more than a child of one. Each scan reads the namespace's listening
sockets; only a listening socket not seen before has the tree's descriptors walked."""
import os
import sys
import time

from conftest import PEERS
from test_readiness import agent_of, launch, stop

PROCESSES = 300
#: A generous bound on the agent's share of one core, for a machine shared with other work.
MOST = 0.05
WINDOW = 2.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def test_a_tree_of_many_processes_with_nothing_new_costs_the_searching_agent_little(bindir):
    """300 processes holding 5 silent listeners and no gRPC port: while the agent scans every
    50 ms, it spends under 5% of a core (walking every process's descriptors on each scan
    cost it about a quarter)."""
    command = [sys.executable, str(PEERS / "process_tree.py"), "--processes", str(PROCESSES), "--silent", "5"]
    proc, lines, _ = launch(bindir, "subreaper", [], command)
    try:
        assert lines.until("READY", time.monotonic() + 20) == f"READY {PROCESSES}"
        agent = agent_of(proc.pid)
        start, begun = cpu_seconds(agent), time.monotonic()
        time.sleep(WINDOW)  # the measurement's window: nothing ends it sooner
        share = (cpu_seconds(agent) - start) / (time.monotonic() - begun)
        assert proc.poll() is None
    finally:
        stop(proc, "subreaper")
    assert share < MOST, f"the searching agent used {share:.1%} of a core over {PROCESSES} processes"
