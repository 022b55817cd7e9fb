"""-stop-signal and -rewrite-signal: the signal Kubernetes' lifecycle.stopSignal (or an image's
STOPSIGNAL) sends drains the server as SIGTERM does by default (/readyz 503 draining at once,
STOPPING=1 on NOTIFY_SOCKET, the child's signal after -drain-delay), as PID 1 of a PID namespace
and as a child subreaper; dumb-init's rewriting applied to what reaches the child."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import PEERS
from peers import free_port
from test_health_endpoint import get
from test_no_health_service import lines_until
from test_readiness import await_line, launch
from test_supervisor import supervisor_pid

STOPPING = PEERS / "stopping.py"
MODES = ["subreaper", "pid1"]
DRAIN = 2.0


def signals_of(lines):
    """The child's SIGNAL lines: [(signo, monotonic seconds)]."""
    return [(int(w[1]), float(w[2])) for w in (line.split() for line in lines) if w[:1] == ["SIGNAL"]]


def datagrams(sock):
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.extend(sock.recv(4096).decode().splitlines())
        except BlockingIOError:
            return got


def drained(bindir, tmp_path, mode, flags, child_stops_on, send):
    """grpc-init with `flags`, -drain-delay and the health port in front of a grpcio child that
    ends on `child_stops_on`; `send` to grpc-init once ready. Returns (when `send` was sent, when
    /readyz answered draining once grpc-init said the drain began, the child's signals,
    grpc-init's lines from `send` on, NOTIFY_SOCKET's messages, grpc-init's exit status)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    command = [sys.executable, str(STOPPING), "--serve", "--linger", "0", "--stop-signal", child_stops_on.name]
    proc, out, log = launch(bindir, mode, [*flags, "-drain-delay", f"{DRAIN:g}s", "-health-addr", f"127.0.0.1:{port}"], command, env=env)
    try:
        await_line(log, "[grpc-init] ready: ")
        assert get(port, "/readyz") == (200, "SERVING")
        sent = time.monotonic()
        os.kill(supervisor_pid(proc, mode), send)
        # grpc-init writes the drain's line and tells the agent at once: a request sent once the
        # line is read finds the agent draining.
        said = lines_until(log, "[grpc-init] draining: ", timeout=10)
        assert get(port, "/readyz") == (503, "draining"), said
        draining = time.monotonic()
        code = proc.wait(timeout=DRAIN + 15)
        child = out.rest(time.monotonic() + 5)
        lines = said + log.rest(time.monotonic() + 5)
        return sent, draining, signals_of(child), lines, datagrams(notify), code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        notify.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stop", [signal.SIGQUIT, signal.SIGUSR1], ids=["SIGQUIT", "SIGUSR1"])
def test_the_stop_signal_drains_as_sigterm_does(bindir, tmp_path, mode, stop):
    """-stop-signal SIGQUIT (SIGUSR1): 503 draining at once, STOPPING=1, the child gets the stop
    signal -drain-delay later and nothing before, and its status (0) is grpc-init's."""
    sent, draining, got, lines, notified, code = drained(bindir, tmp_path, mode, ["-stop-signal", stop.name], stop, stop)
    assert [s for s, _ in got] == [stop], (got, lines)
    assert draining < got[0][1], "503 draining before the child's signal"
    assert got[0][1] - sent >= DRAIN, (got[0][1] - sent, lines)
    assert f"[grpc-init] draining: {stop.name} goes to the child in {DRAIN:g}s; the health endpoint answers draining (was SERVING)" in lines, lines
    assert "READY=1" in notified and "STOPPING=1" in notified, notified
    assert code == 0, lines


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_rewritten_to_sigquit_reaches_the_child_after_the_drain(bindir, tmp_path, mode):
    """-rewrite-signal 15:3 with the default stop signal: SIGTERM received drains, and the child
    gets SIGQUIT at the end of the drain."""
    sent, draining, got, lines, notified, code = drained(bindir, tmp_path, mode, ["-rewrite-signal", "15:3"], signal.SIGQUIT,
                                                         signal.SIGTERM)
    assert [s for s, _ in got] == [signal.SIGQUIT], (got, lines)
    assert draining < got[0][1] and got[0][1] - sent >= DRAIN, (got[0][1] - sent, lines)
    assert f"[grpc-init] draining: SIGQUIT goes to the child in {DRAIN:g}s; the health endpoint answers draining (was SERVING)" in lines, lines
    assert "STOPPING=1" in notified, notified
    assert code == 0, lines


def test_a_signal_rewritten_to_0_is_not_passed_on(bindir):
    proc, out, log = launch(bindir, "subreaper", ["-v", "-ready=false", "-rewrite-signal", "USR1:0"],
                            [sys.executable, str(STOPPING), "--linger", "0"])
    try:
        out.until("READY ", time.monotonic() + 20)
        os.kill(proc.pid, signal.SIGUSR1)
        await_line(log, "[grpc-init] SIGUSR1 not passed on (-rewrite-signal to 0)")
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=15)
        got = signals_of(out.rest(time.monotonic() + 5))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert [s for s, _ in got] == [signal.SIGTERM], got
    assert code == 0


@pytest.mark.parametrize("args,env,message", [
    (["-stop-signal", "SIGFOO"], {}, 'invalid signal "SIGFOO" for -stop-signal'),
    ([], {"GRPC_INIT_STOP_SIGNAL": "KILL"}, "GRPC_INIT_STOP_SIGNAL SIGKILL cannot be caught"),
    (["-stop-signal", "19"], {}, "-stop-signal SIGSTOP cannot be caught"),
    (["-rewrite-signal", "15"], {}, 'invalid value "15" for flag -rewrite-signal: want FROM:TO, signals by name or number (15:3, TERM:QUIT, 10:0)'),
    (["-rewrite-signal", "KILL:15"], {}, 'invalid value "KILL:15" for flag -rewrite-signal: SIGKILL cannot be caught'),
    (["-rewrite-signal", "15:STOP"], {}, 'invalid value "15:STOP" for flag -rewrite-signal: SIGSTOP is not forwarded: rewrite to a signal the child can catch'),
    ([], {"GRPC_INIT_REWRITE_SIGNAL": "15:3,TERM:2"}, "GRPC_INIT_REWRITE_SIGNAL: SIGTERM rewritten twice (to SIGQUIT and to SIGINT)"),
    (["-stop-signal", "QUIT", "-rewrite-signal", "3:0"], {}, "-rewrite-signal drops the stop signal SIGQUIT: the child would never be asked to stop"),
])
def test_bad_stop_and_rewrite_signals_are_refused_in_one_line(bindir, args, env, message):
    out = subprocess.run([str(bindir / "grpc-init"), *args, "--", "true"], capture_output=True, text=True, timeout=10,
                         env=dict(os.environ, **env))
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "[grpc-init] error: " + message
