"""-ready-service '*': every service the server lists with Health/List (gRFC A90), one Watch
each, ready when each is SERVING; a service that leaves the list stops counting; a server
without List (grpc-go 1.33) or with more than List may answer is not ready, with a reason that
says so; names the server lists are escaped in grpc-init's lines. Against a grpcio server with
Health of its own (Tests/peers/listserver.py)."""
import json
import os
import subprocess
import sys
import time

from conftest import PEERS
from test_no_health_service import lines_until
from test_readiness import agent_of, await_idle_forever, go_server, launch, stop, wakeups
from test_supervisor import run


def list_server(services, *args):
    return [sys.executable, str(PEERS / "listserver.py"), "--services", json.dumps(services), *args]


def command(proc, out, *words):
    """A command to the list server, applied once it says so."""
    text = json.dumps(list(words))
    proc.stdin.write(text.encode() + b"\n")
    proc.stdin.flush()
    out.until(text, time.monotonic() + 10)


def gated(bindir, services, *gate, env=None):
    proc, out, log = launch(bindir, "subreaper", ["-v", *gate], list_server(services), stdin=subprocess.PIPE, env=env)
    out.until("READY ", time.monotonic() + 20)
    return proc, out, log


def finish(proc):
    proc.stdin.close()
    proc.stdin = None
    return stop(proc, "subreaper")


def test_ready_only_once_the_last_listed_service_is_serving(bindir):
    proc, out, log = gated(bindir, [["a", "NOT_SERVING"], ["b", "NOT_SERVING"], ["c", "NOT_SERVING"]], "-ready-service", "*")
    try:
        seen = lines_until(log, 'not ready yet: service "a": NOT_SERVING')
        for name in ["a", "b"]:
            command(proc, out, "SET", name, "SERVING")
            seen += lines_until(log, f'[grpc-init] health: service "{name}" SERVING')
        assert not any(line.startswith("[grpc-init] ready: ") for line in seen), seen
        command(proc, out, "SET", "c", "SERVING")
        ready = lines_until(log, "[grpc-init] ready: ")[-1]
        assert " (every service it lists) reports SERVING, " in ready, ready
        # One Watch each, pushed: once ready, neither process wakes.
        agent = agent_of(proc.pid)
        assert await_idle_forever(proc.pid) and await_idle_forever(agent)
        before = wakeups(proc.pid), wakeups(agent)
        time.sleep(1)  # a bounded observation window: nothing can be awaited that should not happen
        assert (wakeups(proc.pid), wakeups(agent)) == before
    finally:
        finish(proc)


def test_a_service_removed_from_the_list_stops_counting(bindir):
    proc, out, log = gated(bindir, [["a", "SERVING"], ["b", "NOT_SERVING"]], "-ready-service", "*")
    try:
        lines_until(log, 'not ready yet: service "b": NOT_SERVING')
        command(proc, out, "REMOVE", "b")
        seen = lines_until(log, "[grpc-init] ready: ")
        assert '[grpc-init] health: service "b": SERVICE_UNKNOWN' in seen, seen
    finally:
        finish(proc)


def test_the_environment_variable_asks_for_every_listed_service(bindir):
    env = dict(os.environ, GRPC_INIT_READY_SERVICE="*")
    proc, out, log = gated(bindir, [["", "SERVING"], ["x", "NOT_SERVING"]], env=env)
    try:
        lines_until(log, 'not ready yet: service "x": NOT_SERVING')
        command(proc, out, "SET", "x", "SERVING")
        lines_until(log, "[grpc-init] ready: ")
    finally:
        finish(proc)


def test_a_server_without_list_is_not_ready_and_says_why(bindir):
    proc, _, log = launch(bindir, "subreaper", ["-v", "-ready-service", "*"], go_server())
    try:
        line = lines_until(log, "[grpc-init] not ready yet: service \"*\"")[-1]
        assert line == ('[grpc-init] not ready yet: service "*": rpc error: code = Unimplemented desc = '
                        "the server has no Health/List to list its services"), line
    finally:
        rest = stop(proc, "subreaper")
    assert "ready: " not in rest


def test_more_services_than_list_answers_is_a_clear_reason(bindir):
    proc, _, log = launch(bindir, "subreaper", ["-v", "-ready-service", "*"], list_server([], "--many", "150"), stdin=subprocess.PIPE)
    try:
        line = lines_until(log, "[grpc-init] not ready yet: service \"*\"")[-1]
        assert line == ('[grpc-init] not ready yet: service "*": rpc error: code = ResourceExhausted desc = '
                        "server health list exceeds maximum capacity: 100"), line
        assert proc.poll() is None
    finally:
        finish(proc)


def test_listed_names_with_control_characters_are_escaped_in_lines(bindir):
    name = "evil\n[grpc-init] ready: forged\x1b[31m"
    proc, out, log = gated(bindir, [[name, "NOT_SERVING"]], "-ready-service", "*")
    try:
        seen = lines_until(log, "m\": NOT_SERVING")
        assert seen[-1] == '[grpc-init] health: service "evil\\n[grpc-init] ready: forged\\x1b[31m": NOT_SERVING', seen
        command(proc, out, "SET", name, "SERVING")
        seen += lines_until(log, "[grpc-init] ready: ")
        assert not any("\x1b" in l for l in seen), seen
        assert not any(l.startswith("[grpc-init] ready: forged") for l in seen), seen
    finally:
        finish(proc)


def test_every_listed_service_with_names_is_refused(bindir):
    out = run(bindir, "subreaper", ["-ready-service", "*", "-ready-service", "db", "--", "true"])
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == '[grpc-init] error: -ready-service "*" (every service the server lists) cannot be given with service names'
    env = dict(os.environ, GRPC_INIT_READY_SERVICE="db,*")
    out = run(bindir, "subreaper", ["--", "true"], env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == ('[grpc-init] error: GRPC_INIT_READY_SERVICE "*" (every service the server lists) '
                                          "cannot be given with service names")
