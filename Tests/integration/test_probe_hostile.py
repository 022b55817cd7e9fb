"""What no real server does: stalls, malformed frames, hostile sizes. Each ends with exit 2 or 3,
one line naming the cause, within the timeouts, and without a crash."""
import pytest

from conftest import assert_one_line_failure, raw_peer


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
def test_hostile_responses_fail_the_rpc(probe, mode, message):
    with raw_peer(mode) as port:
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-timeout", "5s")
        assert_one_line_failure(r, 3, "error: health rpc failed: rpc error: ", message)


def test_signal_while_connecting_cancels_with_the_connection_error(bindir):
    import signal
    import subprocess
    import time
    with raw_peer("stall") as port:
        p = subprocess.Popen([str(bindir / "grpc_health_probe"), "-addr", f"127.0.0.1:{port}", "-connect-timeout", "10s", "-v"],
                             stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.stderr.readline().strip() != "establishing connection":
            pass
        start = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rest = p.stderr.read().splitlines()
        assert p.wait(timeout=5) == 2
        assert time.monotonic() - start < 1.0
        assert rest == ["cancellation received (signal: terminated)",
                        f'error: failed to connect service at "127.0.0.1:{port}": context canceled']
