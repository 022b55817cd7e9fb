"""The health endpoint's HTTP/2 side, which faces the pod network: a real h2c client
(python-hyper's h2) for /readyz and /livez over HTTP/2, and hand-made frames (hyperframe, hpack)
for what no real client does: windows lowered while an answer waits, windows granted early,
malformed requests, a TLS hello on the plaintext port. RFC 9113's and RFC 7541's requirements,
case by case, are in test_http2_conformance.py."""
import socket
import time

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from test_health_endpoint import check, gated, get, SERVING
from test_readiness import agent_of, go_server, stop

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CHECK = [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"), (":authority", "x"),
         ("content-type", "application/grpc"), ("te", "trailers")]
EMPTY_REQUEST = b"\x00\x00\x00\x00\x00"
SERVING_MESSAGE = b"\x00\x00\x00\x00\x02\x08\x01"


@pytest.fixture(scope="module")
def endpoint(bindir):
    """One grpc-init with -health-addr in front of a serving grpc-go child, for the module."""
    proc, lines, log, port = gated(bindir, go_server(), "-v")
    yield port, proc, log
    stop(proc, "subreaper")


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(PREFACE)
    return s


def send(s, *frames):
    s.sendall(b"".join(f.serialize() for f in frames))


def settings(**values):
    f = SettingsFrame(0)
    for name, value in values.items():
        f.settings[getattr(SettingsFrame, name)] = value
    return f


def headers(stream, fields, end_stream=False):
    f = HeadersFrame(stream)
    f.data = hpack.Encoder().encode(fields)
    f.flags.add("END_HEADERS")
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def data(stream, payload, end_stream=False):
    f = DataFrame(stream)
    f.data = payload
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def window_update(stream, increment):
    f = WindowUpdateFrame(stream)
    f.window_increment = increment
    return f


class Reader:
    """Frames from the endpoint, each read awaited with a deadline."""

    def __init__(self, s):
        self.s, self.buffer = s, b""

    def frame(self, deadline):
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    f, _ = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                    f.parse_body(memoryview(self.buffer[9:9 + length]))
                    self.buffer = self.buffer[9 + length:]
                    return f
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def until(self, want, deadline):
        """Frames up to the first for which `want(frame)` holds; fails past the deadline."""
        seen = []
        while time.monotonic() < deadline:
            f = self.frame(deadline)
            if f is None:
                break
            seen.append(f)
            if want(f):
                return seen
        raise AssertionError(f"not seen by the deadline: {seen}")

    def silent(self, seconds):
        """No frame for `seconds` (the socket stays open)."""
        try:
            f = self.frame(time.monotonic() + seconds)
        except socket.timeout:
            return True
        raise AssertionError(f"unexpected {f}")


def data_of(frames, stream):
    return b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == stream)


def test_a_window_lowered_below_zero_while_an_answer_waits(endpoint):
    """Once a crash: SETTINGS_INITIAL_WINDOW_SIZE 3, a Check, then the window lowered to 2 (or 0)
    while the 7-byte answer waits on it. The window goes negative, the answer waits, and
    WINDOW_UPDATEs release the rest; the agent neither crashes nor stops answering."""
    port, proc, _ = endpoint
    agent = agent_of(proc.pid)
    for lowered in (2, 0):
        s = connect(port)
        r = Reader(s)
        send(s, settings(INITIAL_WINDOW_SIZE=3), headers(1, CHECK), data(1, EMPTY_REQUEST, end_stream=True))
        first = r.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, time.monotonic() + 5)
        assert data_of(first, 1) == SERVING_MESSAGE[:3]
        send(s, settings(INITIAL_WINDOW_SIZE=lowered))
        r.until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, time.monotonic() + 5)
        assert get(port, "/readyz") == (200, "SERVING"), "answered while the window is below zero"
        send(s, window_update(1, 1 + (2 - lowered) + 1))  # one byte above zero
        more = r.until(lambda f: isinstance(f, DataFrame), time.monotonic() + 5)
        assert data_of(more, 1) == SERVING_MESSAGE[3:4]
        send(s, window_update(1, 100))
        rest = r.until(lambda f: isinstance(f, HeadersFrame) and "END_STREAM" in f.flags, time.monotonic() + 5)
        assert data_of(rest, 1) == SERVING_MESSAGE[4:]
        s.close()
    assert agent_of(proc.pid) == agent


def test_a_window_granted_before_the_request_ends_is_kept(endpoint):
    port, _, _ = endpoint
    s = connect(port)
    r = Reader(s)
    send(s, settings(INITIAL_WINDOW_SIZE=0), headers(1, CHECK), window_update(1, 7), data(1, EMPTY_REQUEST, end_stream=True))
    frames = r.until(lambda f: isinstance(f, HeadersFrame) and "END_STREAM" in f.flags, time.monotonic() + 5)
    assert data_of(frames, 1) == SERVING_MESSAGE
    s.close()


@pytest.mark.parametrize("name,fields", [
    ("upper-case name", CHECK + [("X-Upper", "1")]),
    ("response pseudo-header", [(":status", "200")] + CHECK),
    ("unknown pseudo-header", CHECK[:1] + [(":protocol", "x")] + CHECK[1:]),
    ("pseudo-header after a regular field", CHECK + [(":authority", "y")]),
    ("connection-specific field", CHECK + [("connection", "close")]),
    ("te other than trailers", [f for f in CHECK if f[0] != "te"] + [("te", "gzip")]),
    ("no :path", [f for f in CHECK if f[0] != ":path"]),
    ("empty :method", [(":method", "")] + CHECK[1:]),
    ("repeated :scheme", CHECK[:2] + [(":scheme", "https")] + CHECK[2:]),
    ("content-length that does not match", CHECK + [("content-length", "4")]),
])
def test_a_malformed_request_is_a_stream_protocol_error(endpoint, name, fields):
    port, _, _ = endpoint
    s = connect(port)
    r = Reader(s)
    send(s, settings(), headers(1, fields), data(1, EMPTY_REQUEST, end_stream=True))
    frames = r.until(lambda f: f.stream_id == 1, time.monotonic() + 5)
    assert isinstance(frames[-1], RstStreamFrame) and frames[-1].error_code == 1, (name, frames)
    # The connection goes on: a good request on it is answered.
    send(s, headers(3, CHECK), data(3, EMPTY_REQUEST, end_stream=True))
    frames = r.until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 3 and "END_STREAM" in f.flags, time.monotonic() + 5)
    assert data_of(frames, 3) == SERVING_MESSAGE
    s.close()


def test_request_trailers_are_accepted(endpoint):
    port, _, _ = endpoint
    s = connect(port)
    r = Reader(s)
    send(s, settings(), headers(1, CHECK), data(1, EMPTY_REQUEST), headers(1, [("x-trailer", "1")], end_stream=True))
    frames = r.until(lambda f: isinstance(f, HeadersFrame) and "END_STREAM" in f.flags or isinstance(f, RstStreamFrame),
                     time.monotonic() + 5)
    assert data_of(frames, 1) == SERVING_MESSAGE
    s.close()


def h2c_get(port, path, method="GET"):
    """A GET over h2c with a real client (h2): (status, body)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", method), (":scheme", "http"), (":path", path), (":authority", "pod")], end_stream=True)
        s.sendall(conn.data_to_send())
        status, body = None, b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body.decode().rstrip("\n")
            s.sendall(conn.data_to_send())
        raise AssertionError("no answer by the deadline")
    finally:
        s.close()


def test_readyz_and_livez_over_h2c(endpoint):
    """kubelet's httpGet with protocol HTTP2 (prior knowledge) gets what HTTP/1.1 gets."""
    port, _, _ = endpoint
    assert h2c_get(port, "/readyz") == (200, "SERVING")
    assert h2c_get(port, "/livez?timeout=2s") == (200, "SERVING")
    assert h2c_get(port, "/readyz", method="HEAD") == (200, "")
    assert h2c_get(port, "/readyz?timeout=nope") == (400, "invalid timeout")
    assert h2c_get(port, "/nope") == (404, "not found")
    assert h2c_get(port, "/readyz", method="POST") == (405, "method not allowed")
    assert h2c_get(port, "/grpc.health.v1.Health/Check")[0] == 415


def test_a_tls_hello_on_the_plaintext_port_is_closed_at_once(endpoint):
    port, _, log = endpoint
    import ssl
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            context.wrap_socket(raw, server_hostname="pod")
    assert time.monotonic() - start < 1.0, "closed at once, not at the 5 s head timeout"
    line = log.until("[grpc-init] health endpoint: a TLS handshake", time.monotonic() + 5)
    assert "plaintext" in line
    assert check(port) == SERVING
