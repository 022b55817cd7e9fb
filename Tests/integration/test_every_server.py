"""Every gRPC server of the child's tree counts: with no -ready-addr, a tree with two servers (a
main port and an admin port) is ready only when both report SERVING, whichever was found first;
a server that goes away stops counting once its listener is gone."""
import subprocess
import sys
import time

import pytest

from conftest import GO_SERVER, PEERS
from peers import free_port
from test_health_endpoint import get
from test_readiness import agent_of, await_idle_forever, await_line, launch


def two_servers(first_port, first_status, second_port, second_status, *options):
    return [sys.executable, str(PEERS / "two_servers.py"), str(GO_SERVER), f"127.0.0.1:{first_port}", first_status,
            f"127.0.0.1:{second_port}", second_status, *options]


def await_found(log, *ports, timeout=10):
    """Once a line has said each server on `ports` is found, in whatever order. Returns every
    line read on the way (what else grpc-init said meanwhile)."""
    deadline = time.monotonic() + timeout
    waiting = set(ports)
    seen = []
    while waiting:
        seen.append(line := log.next(deadline))
        if line.startswith("[grpc-init] health: found the gRPC server at "):
            waiting -= {port for port in waiting if f"127.0.0.1:{port} " in line}
    return seen


def await_readyz(port, status, said=lambda lines: True, timeout=10):
    """/readyz?verbose once it answers `status` with lines that `said` accepts: the body's lines.
    Polled: the endpoint's answer is the event, and nothing else announces it."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = get(port, "/readyz?verbose")
        if code == status and said(body.splitlines()):
            return body.splitlines()
        if time.monotonic() > deadline:
            raise TimeoutError(f"/readyz answered {code} {body!r}, not {status}")
        time.sleep(0.02)  # bounded by the deadline above


def line_of(lines, port):
    named = [line for line in lines if f"127.0.0.1:{port}" in line]
    assert len(named) == 1, lines
    return named[0]


@pytest.mark.parametrize("run", range(8))
def test_not_ready_while_one_of_two_servers_is_not_serving(bindir, run):
    # The start order alternates; which server answers first varies from run to run, and
    # the verdict must not. The second server starts as the first is being found, and the
    # first turns SERVING once the second listens: the tree must not be ready on the first alone.
    serving_first = run % 2 == 0
    serving, not_serving, health = free_port(), free_port(), free_port()
    command = (two_servers(serving, "SERVING", not_serving, "NOT_SERVING", "--second-once-asked") if serving_first
               else two_servers(not_serving, "NOT_SERVING", serving, "SERVING", "--second-once-asked"))
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{health}"], command, stdin=subprocess.PIPE)
    try:
        # Readiness said once cannot be taken back (the ready file, READY=1): nothing is ready
        # before discovery has found both servers, whichever answered first.
        earlier = await_found(log, serving, not_serving)
        assert not [line for line in earlier if line.startswith("[grpc-init] ready: ")], earlier
        # Once both have answered (the serving one its status, given once both listen): not
        # ready, and the one holding readiness back is named.
        lines = await_readyz(health, 503, lambda lines: "waiting" not in "".join(lines)
                             and f"[+]127.0.0.1:{serving} SERVING" in lines)
        assert line_of(lines, not_serving) == f"[-]127.0.0.1:{not_serving} NOT_SERVING", lines
        assert line_of(lines, serving) == f"[+]127.0.0.1:{serving} SERVING", lines
        assert lines[-1] == "readyz check failed: NOT_SERVING", lines
        code, metrics = get(health, "/metrics")
        assert code == 200
        assert f'grpc_init_server_serving{{server="127.0.0.1:{serving}",service=""}} 1' in metrics.splitlines(), metrics
        assert f'grpc_init_server_serving{{server="127.0.0.1:{not_serving}",service=""}} 0' in metrics.splitlines(), metrics
        assert get(health, "/readyz")[0] == 503
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_ready_when_both_serve_and_a_server_gone_stops_counting(bindir):
    main, admin, health = free_port(), free_port(), free_port()
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{health}"],
                          two_servers(main, "SERVING", admin, "NOT_SERVING"), stdin=subprocess.PIPE)
    try:
        await_found(log, main, admin)
        await_readyz(health, 503, lambda lines: "waiting" not in "".join(lines))
        proc.stdin.write(b"1 SET - SERVING\n")
        proc.stdin.flush()
        lines = await_readyz(health, 200)
        assert line_of(lines, main).startswith("[+]") and line_of(lines, admin).startswith("[+]"), lines
        # The admin server exits: it stops counting once its listener is gone, and the tree stays
        # ready on the main server (decided: a server that is gone holds nothing back).
        proc.stdin.write(b"1 EXIT\n")
        proc.stdin.flush()
        gone = await_line(log, "[grpc-init] health: ", timeout=10)
        while "is gone" not in gone:
            gone = await_line(log, "[grpc-init] health: ", timeout=10)
        assert f"127.0.0.1:{admin}" in gone, gone
        # One server left: the answer is a single server's again.
        assert await_readyz(health, 200) == ["[+](server) SERVING", "readyz check passed"]
        # The last server gone: nothing is ready.
        proc.stdin.write(b"0 EXIT\n")
        proc.stdin.flush()
        await_readyz(health, 503)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("run", range(4))
def test_a_server_without_health_beside_one_with_it_is_listed_not_waited_for(bindir, run):
    serving, bare, health = free_port(), free_port(), free_port()
    command = (two_servers(serving, "SERVING", bare, "NO_HEALTH") if run % 2 == 0
               else two_servers(bare, "NO_HEALTH", serving, "SERVING"))
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{health}"], command, stdin=subprocess.PIPE)
    try:
        await_found(log, serving, bare)
        lines = await_readyz(health, 200, lambda lines: len(lines) == 3)
        assert line_of(lines, serving) == f"[+]127.0.0.1:{serving} SERVING", lines
        assert line_of(lines, bare).startswith(f"[-]127.0.0.1:{bare} rpc error: code = Unimplemented"), lines
        # Not checked again: the idle agent does not wake for it.
        assert await_idle_forever(agent_of(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_servers_all_without_health_are_ready_because_they_answer_grpc(bindir):
    """No server of the tree has a health service: each counts, and the tree is ready because
    each answers gRPC, as a lone server without one is."""
    first, second, health = free_port(), free_port(), free_port()
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{health}"],
                          two_servers(first, "NO_HEALTH", second, "NO_HEALTH"), stdin=subprocess.PIPE)
    try:
        earlier = await_found(log, first, second)
        lines = await_readyz(health, 200, lambda lines: len(lines) == 3)
        assert line_of(lines, first) == f"[+]127.0.0.1:{first} SERVING", lines
        assert line_of(lines, second) == f"[+]127.0.0.1:{second} SERVING", lines
        said = set()

        def note(line):
            if line.startswith("[grpc-init] health: 127.0.0.1:") and "has no health service" in line:
                said.update(port for port in (first, second) if f"127.0.0.1:{port} " in line)

        for line in earlier:  # one may have been said before the other server was found
            note(line)
        while len(said) < 2:
            note(await_line(log, "[grpc-init] health: 127.0.0.1:", timeout=10))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
