"""The services a server lists (Health/List, gRFC A90) without `-ready-service '*'`: a verbose
question (`/readyz?verbose`, the probe's -v with no -addr) takes each watched server's List
afresh and shows each listed service that is not watched, as listed and not required; a List
that fails is one line, not a failed answer; a server without List (grpc-go 1.33) shows
nothing of it. The endpoint's gRPC Health/List answers from the model and a fresh List, at
most 100 entries. grpcio is the List's client, the call built by hand (it has no List stub)."""
import json
import shlex
import subprocess
import sys
import threading
import time

import grpc
import pytest

from conftest import PEERS
from peers import free_port, protobuf_fields as fields
from test_health_actions import probe_inside
from test_every_server import await_found, await_readyz
from test_health_endpoint import get
from test_readiness import go_server, launch, stop

STATUSES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def list_server(services, *args):
    return [sys.executable, str(PEERS / "listserver.py"), "--services", json.dumps(services), *args]


def gated(bindir, command, *gate, mode="subreaper"):
    """grpc-init with the endpoint on a free port in front of `command`, once ready."""
    port = free_port()
    proc, out, log = launch(bindir, mode, ["-health-addr", f"127.0.0.1:{port}", *gate], command, stdin=subprocess.PIPE)
    out.until("READY ", time.monotonic() + 20)
    log.until("[grpc-init] ready: ", time.monotonic() + 20)
    return proc, out, log, port


def finish(proc, mode="subreaper"):
    proc.stdin.close()
    proc.stdin = None
    return stop(proc, mode)


def command(proc, out, *words):
    """A command to the list server, applied once it says so; the server's lines before that."""
    text = json.dumps(list(words))
    proc.stdin.write(text.encode() + b"\n")
    proc.stdin.flush()
    seen, deadline = [], time.monotonic() + 10
    while (line := out.next(deadline)) != text:
        seen.append(line)
    return seen


def list_of(port, timeout=10):
    """The endpoint's Health/List: {service: STATUS}."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/List", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        response = call(b"", timeout=timeout)
    listed = {}
    for number, entry in fields(response):
        assert number == 1
        parts = dict(fields(entry))
        status = dict(fields(parts.get(2, b""))).get(1, 0)
        listed[parts.get(1, b"").decode()] = STATUSES[status]
    return listed


ABC = [["", "SERVING"], ["a", "SERVING"], ["b", "NOT_SERVING"], ["c", "SERVING"]]
ABC_LINES = ["[+](server) SERVING", "[+]a SERVING (listed, not required)", "[-]b NOT_SERVING (listed, not required)",
             "[+]c SERVING (listed, not required)"]


def test_readyz_verbose_lists_what_the_server_lists_fresh_each_time(bindir):
    proc, out, _, port = gated(bindir, list_server(ABC))
    try:
        assert get(port, "/readyz?verbose") == (200, "\n".join(ABC_LINES + ["readyz check passed"]))
        # Not asked once at connect: a service added later shows on the next verbose answer.
        assert command(proc, out, "SET", "d", "NOT_SERVING") == ["LIST"]
        status, body = get(port, "/readyz?verbose")
        assert status == 200 and "[-]d NOT_SERVING (listed, not required)" in body.splitlines(), body
        assert command(proc, out, "SET", "e", "SERVING") == ["LIST"]
        # A question that is not verbose takes no List (the server says LIST for each one).
        assert get(port, "/readyz") == (200, "SERVING")
        assert get(port, "/livez?verbose") == (200, "SERVING")
        assert command(proc, out, "SET", "f", "SERVING") == []
    finally:
        finish(proc)


def test_the_probe_with_no_flags_lists_them_with_v(bindir):
    proc, out, _, _ = gated(bindir, list_server(ABC), mode="pid1")
    try:
        r = probe_inside(bindir, proc, "-v")
        # The probe's lines go to stderr, as Go's log writes them; the options it parsed first.
        lines = r.stderr.splitlines()
        asking = lines.index("asking grpc-init's health agent (no -addr)")
        assert (r.returncode, lines[asking + 1:]) == (0, [*ABC_LINES, "status: SERVING"]), r
        command(proc, out, "SET", "d", "SERVING")
        r = probe_inside(bindir, proc, "-v")
        assert "[+]d SERVING (listed, not required)" in r.stderr.splitlines(), r
        # Without -v the answer is as it was.
        assert probe_inside(bindir, proc).stderr == "status: SERVING\n"
    finally:
        finish(proc, "pid1")


def test_a_list_that_fails_is_one_line_not_a_failed_answer(bindir):
    proc, _, _, port = gated(bindir, list_server([["", "SERVING"]], "--many", "150"))
    try:
        assert get(port, "/readyz?verbose") == (200, "\n".join([
            "[+](server) SERVING",
            "[?]services could not be listed: rpc error: code = ResourceExhausted desc = server health list exceeds maximum capacity: 100",
            "readyz check passed"]))
    finally:
        finish(proc)


def test_a_server_without_list_shows_no_list_and_the_endpoint_lists_from_the_model(bindir):
    port = free_port()
    proc, _, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{port}", "-ready-service", "db"], go_server("-services", "db=SERVING"))
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        for _ in range(2):
            assert get(port, "/readyz?verbose") == (200, "[+]db SERVING\nreadyz check passed")
            assert list_of(port) == {"": "SERVING", "db": "SERVING"}
    finally:
        stop(proc, "subreaper")


def test_a_server_without_list_is_asked_once_and_remembered(bindir):
    proc, out, _, port = gated(bindir, list_server([["", "SERVING"]], "--no-list"))
    try:
        for _ in range(3):
            assert get(port, "/readyz?verbose") == (200, "[+](server) SERVING\nreadyz check passed")
            assert list_of(port) == {"": "SERVING"}
        # The server says LIST for each List it was asked.
        assert command(proc, out, "SET", "x", "SERVING") == ["LIST"]
    finally:
        finish(proc)


def test_a_verbose_answer_keeps_one_deadline_for_its_lists_and_its_check(bindir):
    proc, out, _, port = gated(bindir, list_server(ABC))
    try:
        command(proc, out, "DELAY", "3")
        started = time.monotonic()
        status, body = get(port, "/readyz?verbose&timeout=1s")
        took = time.monotonic() - started
        # The Lists had half the second, the Check the rest: answered within the second.
        assert status == 503 and took < 1.5, (took, body)
        assert "[?]services could not be listed: rpc error: code = DeadlineExceeded desc = context deadline exceeded" in body.splitlines()
    finally:
        finish(proc)


def test_a_short_question_does_not_cut_a_longer_ones_list_short(bindir):
    proc, out, _, port = gated(bindir, list_server(ABC))
    try:
        command(proc, out, "DELAY", "0.5")
        first = {}
        short = threading.Thread(target=lambda: first.update(answer=get(port, "/readyz?verbose&timeout=50ms")))
        short.start()
        time.sleep(0.01)
        status, body = get(port, "/readyz?verbose&timeout=5s")
        short.join(5)
        assert first["answer"][0] == 503, first
        assert (status, body) == (200, "\n".join(ABC_LINES + ["readyz check passed"]))
    finally:
        finish(proc)


def test_the_probe_says_how_many_lines_its_answer_left_out(bindir):
    proc, _, _, port = gated(bindir, list_server([["", "SERVING"]], "--many", "40"), mode="pid1")
    try:
        lines = probe_inside(bindir, proc, "-v").stderr.splitlines()
        # The (server) line and 32 listed lines fit; the other 8 are counted.
        assert lines[-2:] == ["[?]8 more services not shown", "status: SERVING"], lines
        assert lines[-35] == "[+](server) SERVING" and lines[-34] == "[+]svc0 SERVING (listed, not required)", lines
        # The endpoint shows them all.
        status, body = get(port, "/readyz?verbose")
        assert status == 200 and len(body.splitlines()) == 42, body
    finally:
        finish(proc, "pid1")


def test_the_endpoint_answers_list_from_the_model_and_a_fresh_list(bindir):
    proc, out, _, port = gated(bindir, list_server(ABC), "-ready-service", "a")
    try:
        assert list_of(port) == {"": "SERVING", "a": "SERVING", "b": "NOT_SERVING", "c": "SERVING"}
        command(proc, out, "SET", "c", "NOT_SERVING")
        command(proc, out, "SET", "z", "SERVING")
        assert list_of(port) == {"": "SERVING", "a": "SERVING", "b": "NOT_SERVING", "c": "NOT_SERVING", "z": "SERVING"}
    finally:
        finish(proc)


def test_more_than_100_entries_is_resource_exhausted(bindir):
    # The server lists 100 (all it may); with grpc-init's "" that is 101.
    proc, _, _, port = gated(bindir, list_server([], "--many", "100"), "-ready-service", "svc0")
    try:
        with pytest.raises(grpc.RpcError) as failed:
            list_of(port)
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failed.value.details() == "server health list exceeds maximum capacity: 100"
    finally:
        finish(proc)


def test_with_two_servers_each_ones_list_follows_it_and_the_endpoint_merges_them(bindir):
    pa, pb = free_port(), free_port()
    a, b = f"127.0.0.1:{pa}", f"127.0.0.1:{pb}"
    first = list_server([["", "SERVING"], ["x", "SERVING"], ["y", "SERVING"]], "--listen", a)
    second = list_server([["", "SERVING"], ["x", "NOT_SERVING"]], "--listen", b)
    tree = ["sh", "-c", f"{shlex.join(first)} & {shlex.join(second)} & wait"]
    port = free_port()
    proc, out, log = launch(bindir, "subreaper", ["-health-addr", f"127.0.0.1:{port}"], tree)
    try:
        await_found(log, pa, pb)
        body = "\n".join(await_readyz(port, 200, lambda lines: f"[+]{a} SERVING" in lines and f"[+]{b} SERVING" in lines))
        lines = {a: [f"[+]{a} SERVING", f"[+]{a} x SERVING (listed, not required)", f"[+]{a} y SERVING (listed, not required)"],
                 b: [f"[+]{b} SERVING", f"[-]{b} x NOT_SERVING (listed, not required)"]}
        # Each server's own list follows its line, the servers in the order of their names.
        assert body.splitlines() == [*lines[min(a, b)], *lines[max(a, b)], "readyz check passed"], body
        # x is SERVING on one server and not on the other: NOT_SERVING in the merged List.
        assert list_of(port) == {"": "SERVING", "x": "NOT_SERVING", "y": "SERVING"}
    finally:
        stop(proc, "subreaper")
