"""Durations at the ends of Go's range, where the probe's flags and the gate's reach the code
that adds, scales and converts them: Go's largest (2562047h47m16.854775807s, Int64.max
nanoseconds) means "a long time", a large negative is refused as the reference refuses it, the
smallest positive (1ns) times out as the reference's does, and nothing ends in a trap (SIGILL,
exit 132, or an abort). The supervisor's own flags are not here: they are covered with it."""
import signal
import time

import pytest

from conftest import server
from test_health_actions import probe_inside
from peers import free_port
from test_health_endpoint import SERVING, check, get
from test_readiness import go_server, launch, py_server, stop

LARGEST = "2562047h47m16.854775807s"
SMALLEST = "-2562047h47m16.854775808s"
# Go's ParseDuration adds 2^63 to 2^63 in a uint64, which wraps to 0: the text means 0s.
WRAPPING = "9223372036854775808ns9223372036854775808ns"
KINDS = ["python", "go"]


def no_trap(code, what):
    """An exit status, not a crash: no signal (a negative status from subprocess), and not the
    128+N a shell reports for SIGILL (a Swift trap) or SIGABRT."""
    assert code >= 0 and code not in (132, 134), f"{what}: ended by a trap ({code})"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flags", [
    ["-connect-timeout", LARGEST],
    ["-rpc-timeout", LARGEST],
    ["-connect-timeout", LARGEST, "-rpc-timeout", LARGEST],
])
def test_the_probe_at_gos_largest_duration_is_served(probe, kind, flags):
    with server(kind) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", *flags)
        no_trap(r.code, r)
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r
        r = probe("-addr", f"127.0.0.1:{port}", "-v", *flags)
        given = dict(zip(flags[::2], flags[1::2]))
        shown = f"conn_timeout={given.get('-connect-timeout', '1s')} rpc_timeout={given.get('-rpc-timeout', '1s')}"
        assert r.code == 0 and r.lines[-1] == "status: SERVING" and f"> addr=127.0.0.1:{port} {shown}" in r.lines, r


@pytest.mark.parametrize("flag", ["-connect-timeout", "-rpc-timeout"])
@pytest.mark.parametrize("value,shown", [(SMALLEST, SMALLEST), ("-1ns", "-1ns"), ("-2562047h", "-2562047h0m0s"),
                                         (WRAPPING, "0s")])
def test_the_probe_refuses_what_is_not_positive_as_the_reference_does(probe, flag, value, shown):
    """The reference's `flConnTimeout <= 0` check: exit 1 with the value as Go prints it."""
    with server("go") as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", flag, value)
        no_trap(r.code, r)
        assert (r.code, r.lines) == (1, [f"error: {flag} must be greater than zero (specified: {shown})"]), r


@pytest.mark.parametrize("kind", KINDS)
def test_the_probe_at_one_nanosecond_times_out_as_the_reference_does(probe, kind):
    with server(kind) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "1ns")
        no_trap(r.code, r)
        assert (r.code, r.lines) == (2, [f'timeout: failed to connect service "127.0.0.1:{port}" within 1ns']), r
        # The Check goes out behind the connection preface and its answer can be in before the
        # connection counts as made; an RPC of 1ns still never completes (grpc-go's call
        # counts from its start). Several runs, since the answer's timing varies.
        for _ in range(20):
            r = probe("-addr", f"127.0.0.1:{port}", "-rpc-timeout", "1ns")
            no_trap(r.code, r)
            assert (r.code, r.lines) == (3, ["timeout: health rpc did not complete within 1ns"]), r


def test_the_probe_with_no_flags_at_gos_largest_duration_asks_the_agent(bindir):
    """No -addr: the probe waits for the agent's answer -connect-timeout plus -rpc-timeout, a sum
    past Int64's range at Go's largest."""
    proc, _, log = launch(bindir, "pid1", [], go_server())
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        for flags in (["-rpc-timeout", LARGEST], ["-connect-timeout", LARGEST, "-rpc-timeout", LARGEST]):
            r = probe_inside(bindir, proc, *flags)
            no_trap(r.returncode, r)
            assert (r.returncode, r.stderr) == (0, "status: SERVING\n"), (flags, r)
        r = probe_inside(bindir, proc, "-rpc-timeout", SMALLEST)
        assert (r.returncode, r.stderr) == (1, f"error: -rpc-timeout must be greater than zero (specified: {SMALLEST})\n"), r
    finally:
        stop(proc, "pid1")


GATE = ["-ready-interval", LARGEST, "-ready-connect-timeout", LARGEST, "-ready-rpc-timeout", LARGEST,
        "-health-timeout", LARGEST]
CHILDREN = {
    "go": go_server(),
    # Checks every -ready-interval: the first round at once, the next at the end of time.
    "go-without-watch": go_server("-no-watch"),
    "python": py_server(),
}


@pytest.mark.parametrize("child", list(CHILDREN))
def test_the_gate_at_gos_largest_durations_finds_the_server_and_answers(bindir, child):
    port = free_port()
    proc, _, log = launch(bindir, "pid1", ["-health-addr", f"127.0.0.1:{port}", *GATE], CHILDREN[child])
    try:
        ready = log.until("[grpc-init] ready: ", time.monotonic() + 20)
        assert " reports SERVING, " in ready, ready
        assert get(port, "/readyz") == (200, "SERVING")
        assert get(port, f"/readyz?timeout={LARGEST}") == (200, "SERVING")
        assert get(port, f"/livez?timeout={LARGEST}") == (200, "SERVING")
        assert get(port, f"/readyz?timeout={SMALLEST}") == (400, "invalid timeout")
        assert check(port) == SERVING
        assert check(port, timeout=10**8) == SERVING
        assert get(port, "/livez") == (200, "SERVING")
    finally:
        rest = stop(proc, "pid1")  # SIGTERM, forwarded to the child
    no_trap(proc.returncode, rest)
    # The child was killed by the forwarded SIGTERM: grpc-init exits with 128+15 for it.
    assert proc.returncode == 128 + signal.SIGTERM, rest
    assert "starting it again" not in rest, "the health agent never crashed"


def test_a_timeout_parameter_that_go_reads_as_zero_is_refused_and_the_agent_lives(bindir):
    """?timeout= is parsed by the agent from a peer's bytes: a sum that wraps in Go's reading is
    0s there (not a timeout, so 400), and the agent answers the next probe as it did before."""
    port = free_port()
    proc, _, log = launch(bindir, "pid1", ["-health-addr", f"127.0.0.1:{port}"], go_server())
    try:
        log.until("[grpc-init] ready: ", time.monotonic() + 20)
        for path in ("/readyz", "/livez"):
            assert get(port, f"{path}?timeout={WRAPPING}") == (400, "invalid timeout")
            assert get(port, f"{path}?timeout={WRAPPING[:-2]}s") == (400, "invalid timeout")
        assert get(port, "/readyz") == (200, "SERVING")
    finally:
        rest = stop(proc, "pid1")
    no_trap(proc.returncode, rest)
    assert proc.returncode == 128 + signal.SIGTERM, rest
    assert "starting it again" not in rest, "the health agent never crashed"
