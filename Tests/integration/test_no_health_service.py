"""A server without the health service: with no -ready-service, grpc-init takes its
UNIMPLEMENTED for grpc.health.v1.Health (sent by the server itself) as proof that a gRPC server
listens, and calls it ready. Said once in the log and in /readyz's body; no periodic Checks (the
agent sleeps once ready); /livez fails only when the server stops answering; the local probe
reads the agent's verdict, while the exec probe with -addr keeps the reference tool's exit 3."""
import os
import signal
import time

import pytest
from grpc_health.v1 import health_pb2

from test_health_actions import probe_inside
from test_health_endpoint import check, free_port, get
from test_readiness import agent_of, await_idle_forever, children, go_server, launch, py_server, stop, wakeups
from test_supervisor import supervisor_pid

SAID = "SERVING (no health service: ready because it answers gRPC)"
SERVERS = {"go": go_server("-no-health"), "python": py_server("--no-health")}


def lines_until(reader, text, timeout=20):
    """Every line of `reader` up to and including the first that contains `text`."""
    deadline = time.monotonic() + timeout
    seen = []
    while text not in (line := reader.next(deadline)):
        seen.append(line)
    return seen + [line]


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_server_without_health_is_ready_because_it_answers_grpc(bindir, kind):
    health = free_port()
    proc, out, log = launch(bindir, "pid1", ["-health-addr", f"127.0.0.1:{health}"], SERVERS[kind])
    try:
        port = out.until("READY ", time.monotonic() + 20).split()[-1].rsplit(":", 1)[-1]
        seen = lines_until(log, "[grpc-init] ready: ")
        said = [line for line in seen if "has no health service" in line]
        assert said == [f"[grpc-init] health: 127.0.0.1:{port} has no health service (grpc.health.v1.Health is UNIMPLEMENTED): "
                        "ready because it answers gRPC; no periodic Checks"], seen
        assert seen[-1].startswith(f"[grpc-init] ready: 127.0.0.1:{port} answers gRPC (no health service), "), seen
        assert not any("a Check every" in line for line in seen), seen

        assert get(health, "/readyz") == (200, SAID)
        assert get(health, "/readyz?verbose") == (200, f"[+](server) {SAID}\nreadyz check passed")
        assert get(health, "/livez") == (200, SAID)
        assert check(health) == health_pb2.HealthCheckResponse.SERVING
        status, body = get(health, "/readyz?service=db")
        assert status == 503 and "code = Unimplemented" in body, body

        local = probe_inside(bindir, proc)
        assert (local.returncode, local.stderr) == (0, "status: SERVING\n"), local
        exec_ = probe_inside(bindir, proc, "-addr", f"127.0.0.1:{port}")
        assert exec_.returncode == 3 and "does not implement the grpc health protocol" in exec_.stderr, exec_

        # Ready and idle: no periodic Check wakes the agent, nor anything the supervisor.
        supervisor = supervisor_pid(proc, "pid1")
        agent = agent_of(supervisor)
        assert await_idle_forever(supervisor) and await_idle_forever(agent)
        before = wakeups(supervisor), wakeups(agent)
        time.sleep(1)  # a bounded observation window: nothing can be awaited that should not happen
        assert (wakeups(supervisor), wakeups(agent)) == before

        # A hung server fails liveness (and readiness); answering again, it passes both.
        server = next(c for c in children(supervisor) if c != agent)
        os.kill(server, signal.SIGSTOP)
        try:
            status, body = get(health, "/livez?timeout=300ms")
            assert status == 503 and "deadline" in body, body
            assert get(health, "/readyz?timeout=300ms")[0] == 503
        finally:
            os.kill(server, signal.SIGCONT)
        assert get(health, "/livez") == (200, SAID)
    finally:
        rest = stop(proc, "pid1")
    assert "has no health service" not in rest, "said once"


def test_the_server_going_away_is_seen_without_checks(bindir):
    """No Check runs, yet the server's exit (its connection closing) is news at once."""
    proc, out, log = launch(bindir, "subreaper", ["-v"], ["sh", "-c", f"{' '.join(SERVERS['go'])} & sleep 1000"])
    try:
        out.until("READY ", time.monotonic() + 20)
        lines_until(log, "[grpc-init] ready: ")
        server = next(c for c in children(proc.pid) if c != agent_of(proc.pid))
        go = next(c for c in children(server))
        os.kill(go, signal.SIGKILL)
        seen = lines_until(log, "(was SERVING)", timeout=10)
        assert seen[-1].startswith("[grpc-init] health: "), seen
    finally:
        stop(proc, "subreaper")


def test_a_named_service_of_a_server_without_health_is_not_ready(bindir):
    proc, _, log = launch(bindir, "subreaper", ["-v", "-ready-service", "db"], SERVERS["go"])
    try:
        line = log.until("[grpc-init] not ready yet: rpc error: ", time.monotonic() + 20)
        assert "code = Unimplemented" in line, line
    finally:
        rest = stop(proc, "subreaper")
    assert "ready: " not in rest and "has no health service" not in rest
