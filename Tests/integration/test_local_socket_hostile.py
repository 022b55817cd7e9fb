"""The agent's listening sockets against hostile neighbours: another container of the pod
(another PID namespace, the same network namespace) that holds the local probe socket's name
first, or floods it with connections; and a flood of idle connections to -health-addr that uses
up the agent's descriptors."""
import os
import socket
import subprocess
import sys
import tempfile
import time

from conftest import PEERS, LineReader
from test_health_actions import probe_inside
from peers import free_port
from test_health_endpoint import get
from test_readiness import agent_of, go_server, launch, stop
from test_supervisor import child_pid, supervisor_pid

PEER = PEERS / "local_socket_peer.py"


def probe_name(pid):
    """The local probe socket's name for the PID namespace of `pid`."""
    return f"grpc-init/probe/{os.readlink(f'/proc/{pid}/ns/pid')[5:-1]}"


def neighbour(mode, name):
    """A process of a PID namespace of its own, sharing this network namespace: another
    container of the pod. Returns once it is at work."""
    proc = subprocess.Popen(["unshare", "--pid", "--kill-child", sys.executable, str(PEER), mode, name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.lines = LineReader(proc)
    proc.lines.until("READY", time.monotonic() + 10)
    return proc


def end(proc):
    proc.kill()
    proc.wait(timeout=10)


def test_a_listener_outside_the_pid_namespace_is_not_believed(bindir):
    """A sidecar that binds the name before grpc-init answers every query SERVING: the probe
    sees that the listener is not in its PID namespace and says so (exit 2), whatever the
    squatter answers; the server is NOT_SERVING."""
    # grpc-init's PID namespace is made first, so that its name can be taken before it starts.
    gate = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", 'read go && exec "$0" "$@"',
                             str(bindir / "grpc-init"), "-v", "--", *go_server("-status", "NOT_SERVING")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = LineReader(gate, gate.stderr)
    squatter = None
    try:
        name = probe_name(child_pid(gate.pid))
        squatter = neighbour("squat", name)
        gate.stdin.write(b"go\n")
        gate.stdin.flush()
        # Said without -v too: a warning.
        line = log.until(f"[grpc-init] warning: local probe socket @{name}", time.monotonic() + 20)
        assert "Address already in use" in line and "grpc_health_probe with no flags is unavailable" in line, line
        log.until("[grpc-init] not ready yet: ", time.monotonic() + 20)
        r = probe_inside(bindir, gate)
        assert (r.returncode, r.stderr) == (
            2, f'error: failed to connect service at "grpc-init health agent": the local probe socket @{name} '
               'is held by a process outside this container\n'), r
    finally:
        if squatter:
            end(squatter)
        stop(gate, "pid1")


def test_a_flood_of_foreign_connections_does_not_starve_the_probes(bindir):
    """Two processes of another PID namespace connect in a loop to keep the backlog full: each
    probe is still answered, and none is told that there is no agent."""
    proc, _, log = launch(bindir, "pid1", [], go_server())
    flood = []
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        name = probe_name(supervisor_pid(proc, "pid1"))
        flood = [neighbour("flood", name) for _ in range(2)]
        results = [timed(lambda: probe_inside(bindir, proc, "-connect-timeout", "2s")) for _ in range(40)]
        failed = [(r.returncode, r.stderr) for r in results if (r.returncode, r.stderr) != (0, "status: SERVING\n")]
        print(f"{len(failed)} of {len(results)} failed; slowest {max(r.elapsed for r in results):.2f} s")
        assert not failed, f"{len(failed)} of {len(results)}: {failed[:3]}"
    finally:
        for f in flood:
            end(f)
        stop(proc, "pid1")


def test_many_probes_at_once_are_all_answered(bindir):
    """More probes at once than the backlog holds, with no one hostile: each is answered."""
    proc, _, log = launch(bindir, "pid1", [], go_server())
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        # One shell starts them all, each right after the other, in grpc-init's PID namespace.
        burst = ('for i in $(seq 100); do ("$0" -connect-timeout 2s 2>&1; echo "exit $?") | tr "\\n" " " > "$1/$i" & done; wait')
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(["nsenter", "-t", str(supervisor_pid(proc, "pid1")), "-p", "sh", "-c", burst,
                            str(bindir / "grpc_health_probe"), out], timeout=60, check=True)
            results = [open(os.path.join(out, name)).read() for name in os.listdir(out)]
        failed = [r for r in results if r != "status: SERVING exit 0 "]
        assert len(results) == 100 and not failed, f"{len(failed)} of {len(results)}: {failed[:3]}"
    finally:
        stop(proc, "pid1")


def timed(run):
    start = time.monotonic()
    r = run()
    r.elapsed = time.monotonic() - start
    return r


def cpu_ticks(pid):
    """utime + stime of `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_the_agent_answers_without_spinning(bindir):
    """grpc-init with 64 descriptors and 150 idle connections to -health-addr: /readyz and the
    probe with no flags are answered (the newest connections over the oldest idle ones), and
    the agent does not spin on a listener it cannot accept from."""
    port = free_port()
    proc = subprocess.Popen(["prlimit", "--nofile=64:64", "unshare", "--pid", "--fork", "--mount-proc", str(bindir / "grpc-init"),
                             "-health-addr", f"127.0.0.1:{port}", "--", *go_server()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = LineReader(proc, proc.stderr)
    idle = []
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        agent = agent_of(supervisor_pid(proc, "pid1"))
        for _ in range(150):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            idle.append(s)
        deadline = time.monotonic() + 10
        while open_descriptors(agent) < 60:
            assert time.monotonic() < deadline, f"the agent holds {open_descriptors(agent)} descriptors"
            time.sleep(0.01)  # the agent's accepts, which nothing signals; bounded
        start, ticks = time.monotonic(), cpu_ticks(agent)
        answered = []
        while time.monotonic() - start < 2:  # a window to measure the agent's CPU over
            try:
                answered.append(get(port, "/readyz", timeout=1.5))
            except OSError as e:
                answered.append(("/readyz", repr(e)))
            r = probe_inside(bindir, proc)
            answered.append((r.returncode, r.stderr))
        used = (cpu_ticks(agent) - ticks) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - start)
        print(f"agent CPU {used:.0%} of a core; {len(answered)} answers")
        assert all(a in [(200, "SERVING"), (0, "status: SERVING\n")] for a in answered), answered
        assert used < 0.5, f"the agent used {used:.0%} of a core"
    finally:
        for s in idle:
            s.close()
        stop(proc, "pid1")


def test_a_probe_killed_mid_check_leaves_the_agent_idle(bindir):
    """A probe with no flags killed while the agent's Check of a hung server runs (kubelet's
    exec timeoutSeconds shorter than -rpc-timeout): the agent ends that Check and stays idle,
    instead of waking on the closed connection until the Check's deadline."""
    proc, lines, log = launch(bindir, "pid1", [], go_server("-delay", "60s"))
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        agent = agent_of(supervisor_pid(proc, "pid1"))
        pid = supervisor_pid(proc, "pid1")
        killed = subprocess.run(["timeout", "-s", "KILL", "0.5", "nsenter", "-t", str(pid), "-p",
                                 str(bindir / "grpc_health_probe"), "-rpc-timeout=20s"], capture_output=True, timeout=15)
        assert killed.returncode in (-9, 137), killed  # timeout(1) kills with the signal it sends
        start, ticks = time.monotonic(), cpu_ticks(agent)
        time.sleep(1.5)  # a window to measure the agent's CPU over, within the Check's 20 s
        used = (cpu_ticks(agent) - ticks) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - start)
        assert used < 0.1, f"the agent used {used:.0%} of a core after its probe went away"
    finally:
        stop(proc, "pid1")
