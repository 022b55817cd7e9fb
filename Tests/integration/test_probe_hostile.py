"""What no real server does: stalls, malformed frames, hostile sizes. Each ends with exit 2 or 3,
one line naming the cause, within the timeouts, and without a crash."""
import os
import select
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, LineReader, assert_one_line_failure, raw_peer

MEASURE = ROOT / ".build" / "peers" / "measure"


def test_stall_after_accept_is_a_connect_timeout(probe):
    with raw_peer("stall") as port:
        r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "300ms")
        assert (r.code, r.lines) == (2, [f'timeout: failed to connect service "127.0.0.1:{port}" within 300ms'])
        assert 0.29 <= r.elapsed < 0.6, r


def test_stall_during_rpc_is_an_rpc_timeout(probe):
    with raw_peer("stall-rpc") as port:
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-timeout", "250ms")
        assert (r.code, r.lines) == (3, ["timeout: health rpc did not complete within 250ms"])
        assert 0.24 <= r.elapsed < 0.6, r


@pytest.mark.parametrize("mode,cause", [
    ("close", "closed the connection before the HTTP/2 handshake"),
    ("http1", 'does not speak HTTP/2 (it answered "HTTP/1.1 400 Bad Request")'),
    ("garbage-preface", "server preface must start with SETTINGS"),
])
def test_broken_handshakes_fail_at_once(probe, mode, cause):
    with raw_peer(mode) as port:
        r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "5s")
        assert_one_line_failure(r, 2, f'error: failed to connect service at "127.0.0.1:{port}": ', cause)


@pytest.mark.parametrize("mode,message", [
    ("huge-frame", "code = Internal desc = connection error: frame of 1048576 bytes exceeds the maximum of 16384"),
    ("oversized-headers", "code = Internal desc = connection error: header block larger than 65536 bytes"),
    ("huge-message", "code = ResourceExhausted desc = grpc: received message larger than max (2147483647 vs. 4194304)"),
    ("bad-hpack", "code = Internal desc = connection error: cannot decode response headers"),
    ("rst", "code = Internal desc = stream terminated by RST_STREAM with error code: INTERNAL_ERROR"),
    ("goaway", "code = Unavailable desc = server sent GOAWAY (NO_ERROR: going away)"),
    ("eof-mid-rpc", "code = Unavailable desc = error reading from server: EOF"),
    ("trailers-only-percent", "code = Unavailable desc = café down!"),
])
def test_hostile_responses_fail_the_rpc(bindir, mode, message):
    with raw_peer(mode) as port:
        r = run_measured(bindir, ["-addr", f"127.0.0.1:{port}", "-rpc-timeout", "5s"], timeout=5)
        assert_one_line_failure(r, 3, "error: health rpc failed: rpc error: ", message)
        assert r.rss <= 16, r


def test_signal_while_connecting_cancels_with_the_connection_error(bindir):
    with raw_peer("stall") as port:
        p = subprocess.Popen([str(bindir / "grpc_health_probe"), "-addr", f"127.0.0.1:{port}", "-connect-timeout", "10s", "-v"],
                             stderr=subprocess.PIPE)
        err = LineReader(p, p.stderr)
        err.until("establishing connection", time.monotonic() + 5)
        start = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rest = err.rest(time.monotonic() + 5)
        assert p.wait(timeout=5) == 2
        assert time.monotonic() - start < 1.0
        assert rest == ["cancellation received (signal: terminated)",
                        f'error: failed to connect service at "127.0.0.1:{port}": context canceled']



class Measured:
    def __init__(self, code, lines, elapsed, rss, ended):
        self.code, self.lines, self.elapsed, self.rss, self.ended = code, lines, elapsed, rss, ended

    def __repr__(self):
        return f"Measured(code={self.code}, elapsed={self.elapsed:.3f}, rss={self.rss:.1f} MiB, lines={self.lines!r})"


def run_measured(bindir, args, timeout, on_start=None):
    """Runs the probe under the measuring launcher, its stderr in a file; returns a Measured with
    the exit code, the stderr lines, the wall time, the peak RSS (MiB) and the moment it ended.
    `on_start(pid, err)` runs once it is started. Past `timeout` the probe is killed and the test
    fails."""
    assert MEASURE.exists(), f"{MEASURE} is missing: the test command builds it"
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        launcher = subprocess.Popen([str(MEASURE), str(bindir / "grpc_health_probe"), *args], stdout=subprocess.PIPE,
                                    stderr=err)
        launcher.lines = LineReader(launcher)
        try:
            pid = int(launcher.lines.next(start + timeout).split()[1])
            pidfd = os.pidfd_open(pid)
            try:
                if on_start:
                    on_start(pid, err)
                ready, _, _ = select.select([pidfd], [], [], max(0.0, start + timeout - time.monotonic()))
                ended = time.monotonic()
                if not ready:
                    os.kill(pid, signal.SIGKILL)
            finally:
                os.close(pidfd)
            report = launcher.lines.next(time.monotonic() + 5).split()
        finally:
            launcher.kill()
            launcher.wait(timeout=5)
        assert ready, f"probe still running after {timeout}s: {args}"
        err.seek(0)
        lines = err.read().decode(errors="replace").splitlines()
        return Measured(int(report[1]), lines, ended - start, int(report[3]) / 1024, ended)


UNSENT = ("error: health rpc failed: rpc error: code = Unavailable desc = connection error: "
          "the server is not reading what it is sent (over 1048576 bytes unsent)")
SECOND = ("error: health rpc failed: rpc error: code = Internal desc = grpc: cardinality violation: "
          "expected <EOF> for non server-streaming RPCs, but received another message")
RPC_TIMEOUT = "timeout: health rpc did not complete within 300ms"
# Servers that never stop sending, or stop reading what they are sent.
FLOODS = [
    ("flood-data", RPC_TIMEOUT),
    ("flood-unknown", RPC_TIMEOUT),
    ("flood-priority", RPC_TIMEOUT),
    ("flood-ping-noread", UNSENT),
    ("flood-settings-noread", UNSENT),
    ("endless-messages", SECOND),
    ("gzip-bombs", SECOND),
]


@pytest.mark.parametrize("mode,line", FLOODS, ids=[f[0] for f in FLOODS])
def test_a_flooding_server_loses_to_the_deadline(bindir, mode, line):
    """Each ends, within 16 MiB, with one line, exit 3: the endless floods at the 300 ms
    deadline, the others once the probe sees what is wrong, which a deadline of 10 s leaves it
    time to see however loaded the machine. The bounds only tell ending from reading on while
    the flood burns a core; scripts/bench-timeouts.py measures how close to its deadline the
    probe ends."""
    deadline = 0.3 if line == RPC_TIMEOUT else 10.0
    with raw_peer(mode) as port:
        r = run_measured(bindir, ["-addr", f"127.0.0.1:{port}", "-rpc-timeout", f"{deadline}s"], timeout=deadline + 5)
        assert (r.code, r.lines) == (3, [line]), r
        assert r.elapsed < deadline + 2.0, r
        assert r.rss <= 16, r


ENDLESS = [f[0] for f in FLOODS if f[1] != SECOND]


@pytest.mark.parametrize("mode", ENDLESS + ["stall-rpc", "stall"])
def test_sigterm_ends_the_probe_at_once_whatever_the_server_sends(bindir, mode):
    """SIGTERM, sent once the server has begun (flooding, or stalling the RPC or the handshake),
    ends the probe, with the cancellation lines of its phase, long before its 20 s deadlines.
    The bound is one a loaded machine cannot break while the flood burns a core; a probe that
    read on until a deadline would miss it by 18 s."""
    sent = []
    connecting = mode == "stall"
    mark = b"establishing connection" if connecting else b"connection established"

    def cpu_ticks(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def terminate_once_under_way(pid, err):
        # States the kernel does not signal: the connect line in the probe's stderr, then (against a
        # flood) the probe's first clock tick of CPU spent reading it. Bounded.
        deadline = time.monotonic() + 5
        while mark not in os.pread(err.fileno(), 1 << 16, 0) or (mode in ENDLESS and cpu_ticks(pid) == 0):
            assert time.monotonic() < deadline, "the probe did not get under way"
            time.sleep(0.002)
        sent.append(time.monotonic())
        os.kill(pid, signal.SIGTERM)

    with raw_peer(mode) as port:
        r = run_measured(bindir, ["-v", "-addr", f"127.0.0.1:{port}", "-rpc-timeout", "20s", "-connect-timeout", "20s"],
                         timeout=10, on_start=terminate_once_under_way)
        last = (f'error: failed to connect service at "127.0.0.1:{port}": context canceled' if connecting
                else "error: health rpc failed: rpc error: code = Canceled desc = context canceled")
        assert (r.code, r.lines[-2:]) == (2 if connecting else 3, ["cancellation received (signal: terminated)", last]), r
        assert r.ended - sent[0] < 2.0, r


RPC = "error: health rpc failed: rpc error: code = "
DECOMPRESS = RPC + "Internal desc = grpc: failed to decompress the received message: gzip: "
# Answers no real server gives: each one exit code and one exact line.
ANSWERS = [
    ("second-message", 3, RPC + "Internal desc = grpc: cardinality violation: expected <EOF> for non server-streaming RPCs, "
                                "but received another message"),
    ("trailing-bytes", 3, RPC + "Internal desc = server closed the stream with an incomplete message"),
    ("gzip-corrupt", 3, DECOMPRESS + "invalid block type"),
    ("gzip-truncated", 3, DECOMPRESS + "unexpected end of compressed data"),
    ("gzip-trailing", 3, DECOMPRESS + "incorrect header check"),
    ("gzip-multimember", 0, "status: SERVING"),
    # Both map to UNIMPLEMENTED, but neither is the server saying it has no health service.
    ("unknown-encoding", 3, RPC + 'Unimplemented desc = grpc: Decompressor is not installed for grpc-encoding "br"'),
    ("http-404", 3, RPC + "Unimplemented desc = unexpected HTTP status code received from server: 404"),
    # Server text is printed on one line, its control characters escaped.
    ("message-control", 3, RPC + "Unavailable desc = first\\nsecond\\r\\x1b[31mred"),
    ("goaway-control", 3, RPC + "Unavailable desc = server sent GOAWAY (INTERNAL_ERROR: bye\\nnext line\\x1b[2J)"),
    # A raw control character in a field value makes the response malformed (RFC 9113 §8.2.1).
    ("raw-control-value", 3, RPC + 'Internal desc = invalid header field value for "grpc-message"'),
    ("priority-bad-length", 3, RPC + "Internal desc = connection error: PRIORITY frame of 4 bytes (want 5)"),
    ("group-field", 0, "status: SERVING"),
    ("negative-status", 4, 'service unhealthy (responded with "-1")'),
]


@pytest.mark.parametrize("mode,code,line", ANSWERS, ids=[a[0] for a in ANSWERS])
def test_malformed_answers_are_named_on_one_line(bindir, mode, code, line):
    """At once, within 16 MiB, one line."""
    with raw_peer(mode) as port:
        r = run_measured(bindir, ["-addr", f"127.0.0.1:{port}", "-rpc-timeout", "5s"], timeout=5)
        assert (r.code, r.lines) == (code, [line]), r
        assert r.elapsed < 1.0, r
        assert r.rss <= 16, r


@pytest.mark.parametrize("mode,answer", [
    ("ssh-banner", 'does not speak HTTP/2 (it answered "SSH-2.0-OpenSSH_9.2p1 Debian-2")'),
    ("random-bytes", "does not speak HTTP/2 (its first bytes: f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 fa fb fc fd fe ff)"),
])
def test_another_protocol_is_named_as_not_http2(probe, mode, answer):
    with raw_peer(mode) as port:
        r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "5s")
        assert (r.code, r.lines) == (2, [f'error: failed to connect service at "127.0.0.1:{port}": server at 127.0.0.1:{port} {answer}']), r
        assert r.elapsed < 1.0, r
