"""HTTP/2 conformance of the health endpoint's server role, from RFC 9113 (sections 3 to 8) and
RFC 7541 (what a server must refuse when it decodes a header block), with a raw-frame client of
the test's own: each case sends frames built byte by byte and reads until the frame the RFC
requires (a GOAWAY or RST_STREAM with its error code, a PING ACK, a response HEADERS, or the
connection closed), within a bounded deadline. Test names carry the RFC section they hold.

Where the answer depends on the request, a case runs on `/` (GET) and on
`/grpc.health.v1.Health/Check` (POST with gRPC's headers and an empty request message). Four
cases assert what the endpoint does instead of what RFC 9113 describes, each saying why
(docs/testing.md, "HTTP/2 conformance")."""
import socket
import time

import hpack
import pytest

from test_health_endpoint import gated, get
from test_readiness import agent_of, go_server, stop

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WAIT = 3.0  # seconds any expected frame may take

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x9
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)

EMPTY_REQUEST = b"\x00\x00\x00\x00\x00"
SERVING_MESSAGE = b"\x00\x00\x00\x00\x02\x08\x01"


# --- frames and HPACK, byte by byte ---------------------------------------------------------

def frame(kind, flags, stream, payload=b"", length=None):
    """A frame: 24-bit length, type, flags, reserved bit and 31-bit stream, payload."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def settings(*pairs, flags=0, stream=0):
    return frame(SETTINGS, flags, stream, b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs))


def ping(payload=b"h2-conf!", flags=0, stream=0):
    return frame(PING, flags, stream, payload)


def goaway(last, code, stream=0):
    return frame(GOAWAY, 0, stream, last.to_bytes(4, "big") + code.to_bytes(4, "big"))


def rst_stream(stream, code):
    return frame(RST_STREAM, 0, stream, code.to_bytes(4, "big"))


def window_update(stream, increment):
    return frame(WINDOW_UPDATE, 0, stream, increment.to_bytes(4, "big"))


def priority(stream, depends_on=0, weight=15, exclusive=False):
    return frame(PRIORITY, 0, stream, priority_fields(depends_on, weight, exclusive))


def priority_fields(depends_on, weight, exclusive):
    return ((depends_on | (0x80000000 if exclusive else 0)).to_bytes(4, "big")) + bytes([weight])


def data(stream, payload, end_stream=False, pad=None):
    flags = END_STREAM if end_stream else 0
    if pad is not None:
        return frame(DATA, flags | PADDED, stream, bytes([pad]) + payload + b"\0" * pad)
    return frame(DATA, flags, stream, payload)


def headers(stream, block, end_stream=False, end_headers=True, pad=None, prio=None):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    payload = block
    if prio is not None:
        flags |= PRIORITY_FLAG
        payload = priority_fields(*prio) + payload
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(HEADERS, flags, stream, payload)


def continuation(stream, block, end_headers=True):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream, block)


def integer(value, prefix_bits, first=0):
    """RFC 7541 5.1: an integer on an N-bit prefix, `first` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def string(text):
    raw = text.encode() if isinstance(text, str) else text
    return integer(len(raw), 7) + raw


def literal(name, value):
    """RFC 7541 6.2.2, a literal field without indexing, new name, no Huffman."""
    return b"\x00" + string(name) + string(value)


def encode(fields):
    return b"".join(literal(n, v) for n, v in fields)


# --- the two requests, and the connection ----------------------------------------------------

class Request:
    def __init__(self, name, fields, body):
        self.name, self.fields, self.body = name, fields, body

    def frames(self, stream, end_stream=True, extra=()):
        """The whole request on `stream`; with end_stream False, the stream stays open."""
        block = encode(self.fields + list(extra))
        if self.body is None:
            return headers(stream, block, end_stream=end_stream)
        return headers(stream, block) + (data(stream, self.body, end_stream=True) if end_stream else b"")

    def __repr__(self):
        return self.name


ROOT_GET = Request("root", [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "127.0.0.1")], None)
CHECK = Request("check", [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
                          (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers")],
                EMPTY_REQUEST)
READYZ = [(":method", "GET"), (":scheme", "http"), (":path", "/readyz"), (":authority", "127.0.0.1")]


class Frame:
    def __init__(self, kind, flags, stream, payload):
        self.kind, self.flags, self.stream, self.payload = kind, flags, stream, payload
        self.fields = None

    @property
    def code(self):
        """The error code of a GOAWAY or RST_STREAM."""
        return int.from_bytes(self.payload[4:8] if self.kind == GOAWAY else self.payload[:4], "big")

    def __repr__(self):
        return f"Frame(type={self.kind}, flags={self.flags:#x}, stream={self.stream}, {self.payload[:24]!r})"


class Closed(Exception):
    pass


class Conn:
    """One connection to the endpoint: the preface and SETTINGS sent, the server's SETTINGS
    acknowledged and ours awaited, then frames read up to a deadline."""

    def __init__(self, port, *ours, handshake=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buffer, self.decoder, self.block = b"", hpack.Decoder(), None
        self.server_settings = {}
        if handshake:
            self.s.sendall(PREFACE + settings(*ours))
            seen_settings = seen_ack = False
            deadline = time.monotonic() + WAIT
            while not (seen_settings and seen_ack):
                f = self.read(deadline)
                assert f is not None, "closed during the handshake"
                if f.kind == SETTINGS and f.flags & ACK:
                    seen_ack = True
                elif f.kind == SETTINGS:
                    seen_settings = True
                    for i in range(0, len(f.payload), 6):
                        self.server_settings[int.from_bytes(f.payload[i:i + 2], "big")] = int.from_bytes(f.payload[i + 2:i + 6], "big")
                    self.send(settings(flags=ACK))

    def send(self, *frames):
        try:
            self.s.sendall(b"".join(frames))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may have ended the connection already; what it sent is still read

    def read(self, deadline):
        """The next frame, or None once the connection is closed; fails past the deadline."""
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    head, payload = self.buffer[:9], self.buffer[9:9 + length]
                    self.buffer = self.buffer[9 + length:]
                    f = Frame(head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload)
                    self.decode(f)
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no frame by the deadline")
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                raise AssertionError("no frame by the deadline") from None
            if not chunk:
                return None
            self.buffer += chunk

    def decode(self, f):
        """The server's header blocks, decoded in order (they share one HPACK table)."""
        if f.kind == HEADERS:
            payload = f.payload
            if f.flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if f.flags & PRIORITY_FLAG:
                payload = payload[5:]
            self.block = [f, payload]
        elif f.kind == CONTINUATION and self.block is not None:
            self.block[1] += f.payload
        else:
            return
        if f.flags & END_HEADERS:
            first, block = self.block
            first.fields = dict(self.decoder.decode(block, raw=False))
            self.block = None

    def until(self, want, timeout=WAIT):
        """Frames up to the first for which want(frame) holds; the list ends with None when the
        connection closed first."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            f = self.read(deadline)
            seen.append(f)
            if f is None or want(f):
                return seen

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def endpoint(bindir):
    """One grpc-init with -health-addr in front of a serving grpc-go child, for the module."""
    proc, _, log, port = gated(bindir, go_server())
    try:
        agent = agent_of(proc.pid)
        yield port
        assert agent_of(proc.pid) == agent, "the agent never crashed"
        assert get(port, "/readyz") == (200, "SERVING")
    finally:
        stop(proc, "subreaper")


@pytest.fixture
def conn(endpoint):
    c = Conn(endpoint)
    yield c
    c.close()


paths = pytest.mark.parametrize("request_", [ROOT_GET, CHECK], ids=["root", "check"])


# --- what a case expects ------------------------------------------------------------------

def connection_error(c, code):
    """A GOAWAY with `code`, then the connection closed."""
    seen = c.until(lambda f: f.kind == GOAWAY)
    assert seen[-1] is not None, f"closed with no GOAWAY: {seen}"
    assert seen[-1].code == code, f"GOAWAY {seen[-1].code}, not {code}: {seen}"
    closed(c)


def stream_error(c, stream, code):
    """A RST_STREAM with `code` on `stream`, and the connection still answering a PING."""
    seen = c.until(lambda f: f.kind == GOAWAY or f.kind == RST_STREAM and f.stream == stream)
    assert seen[-1] is not None and seen[-1].kind == RST_STREAM, f"not a stream error: {seen}"
    assert seen[-1].code == code, f"RST_STREAM {seen[-1].code}, not {code}: {seen}"
    alive(c)


def either_error(c, stream, *codes):
    """Where RFC 9113 lets the error be the stream's or the connection's."""
    seen = c.until(lambda f: f.kind == GOAWAY or f.kind == RST_STREAM and f.stream == stream)
    assert seen[-1] is not None, f"closed with no GOAWAY or RST_STREAM: {seen}"
    assert seen[-1].code in codes, f"{seen[-1]} with {seen[-1].code}, not one of {codes}: {seen}"


def closed(c):
    seen = c.until(lambda f: False)
    assert seen[-1] is None


def alive(c, payload=b"alive?!!"):
    """A PING answered by its ACK with the same payload: what came before was not an error."""
    c.send(ping(payload))
    seen = c.until(lambda f: f.kind == PING and f.flags & ACK or f.kind == GOAWAY)
    assert seen[-1] is not None, f"closed: {seen}"
    assert seen[-1].kind == PING and seen[-1].payload == payload, f"not a PING ACK: {seen}"
    return seen


def response(c, stream):
    """The response HEADERS on `stream` (their fields decoded), and what came before."""
    seen = c.until(lambda f: f.kind in (GOAWAY, RST_STREAM) or f.kind == HEADERS and f.stream == stream)
    assert seen[-1] is not None and seen[-1].kind == HEADERS, f"no response: {seen}"
    return seen[-1]


def answered(c, stream, request_):
    status = response(c, stream).fields[":status"]
    assert status == ("404" if request_ is ROOT_GET else "200"), status


def body_of(frames, stream):
    return b"".join(f.payload for f in frames if f is not None and f.kind == DATA and f.stream == stream)


# --- generic: the basics every server does ---------------------------------------------------

def test_generic_1_the_client_preface_is_answered_with_settings(endpoint):
    c = Conn(endpoint, handshake=False)
    c.send(PREFACE + settings())
    seen = c.until(lambda f: f.kind == SETTINGS)
    assert seen[-1] is not None and seen[-1].stream == 0 and not seen[-1].flags & ACK
    c.close()


def test_generic_2_priority_on_an_idle_stream_is_accepted(conn):
    conn.send(priority(1, 0, 15))
    alive(conn)


@paths
def test_generic_2_window_update_on_a_half_closed_remote_stream(conn, request_):
    conn.send(request_.frames(1), window_update(1, 1))
    response(conn, 1)
    alive(conn)


@paths
def test_generic_2_priority_on_a_half_closed_remote_stream(conn, request_):
    conn.send(request_.frames(1), priority(1, 0, 15))
    response(conn, 1)
    alive(conn)


@paths
def test_generic_2_rst_stream_on_a_half_closed_remote_stream(conn, request_):
    conn.send(request_.frames(1), rst_stream(1, 8))
    alive(conn)


@paths
def test_generic_2_priority_on_a_closed_stream(conn, request_):
    conn.send(request_.frames(1))
    conn.until(lambda f: f.stream == 1 and f.flags & END_STREAM and f.kind in (DATA, HEADERS))
    conn.send(priority(1, 0, 15))
    alive(conn)


@pytest.mark.parametrize("pad", [None, 5], ids=["plain", "padded"])
def test_generic_3_1_data(conn, pad):
    conn.send(headers(1, encode(CHECK.fields)), data(1, EMPTY_REQUEST, end_stream=True, pad=pad))
    answered(conn, 1, CHECK)


def test_generic_3_1_multiple_data_frames(conn):
    conn.send(headers(1, encode(CHECK.fields)), data(1, EMPTY_REQUEST[:2]), data(1, EMPTY_REQUEST[2:]), data(1, b"", end_stream=True))
    answered(conn, 1, CHECK)


@paths
@pytest.mark.parametrize("kind", ["plain", "padded", "priority"])
def test_generic_3_2_headers(conn, request_, kind):
    block = encode(request_.fields)
    end = request_.body is None
    f = {"plain": headers(1, block, end), "padded": headers(1, block, end, pad=8),
         "priority": headers(1, block, end, prio=(0, 255, False))}[kind]
    conn.send(f, b"" if end else data(1, request_.body, end_stream=True))
    answered(conn, 1, request_)


@pytest.mark.parametrize("depends_on,weight,exclusive", [(0, 0, False), (0, 255, False), (1, 15, False), (1, 15, True)],
                         ids=["weight-1", "weight-256", "dependency", "exclusive"])
def test_generic_3_3_priority(conn, depends_on, weight, exclusive):
    conn.send(priority(3, depends_on, weight, exclusive))
    alive(conn)


@paths
def test_generic_3_4_rst_stream(conn, request_):
    conn.send(request_.frames(1, end_stream=False), rst_stream(1, 8))
    alive(conn)


def test_generic_3_5_settings(conn):
    conn.send(settings((MAX_CONCURRENT_STREAMS, 100), (INITIAL_WINDOW_SIZE, 65535)))
    seen = conn.until(lambda f: f.kind == SETTINGS and f.flags & ACK or f.kind == GOAWAY)
    assert seen[-1] is not None and seen[-1].kind == SETTINGS and seen[-1].payload == b""


def test_generic_3_7_ping(conn):
    alive(conn, b"\x01\x02\x03\x04\x05\x06\x07\x08")


def test_generic_3_8_goaway(conn):
    conn.send(goaway(0, NO_ERROR))
    seen = conn.until(lambda f: f.kind == GOAWAY and f.code != NO_ERROR)
    assert seen[-1] is None, f"the connection ends quietly: {seen}"


@pytest.mark.parametrize("stream", [0, 1])
def test_generic_3_9_window_update(conn, stream):
    if stream:
        conn.send(CHECK.frames(1, end_stream=False))
    conn.send(window_update(stream, 1))
    alive(conn)


@paths
@pytest.mark.parametrize("pieces", [2, 4])
def test_generic_3_10_continuation(conn, request_, pieces):
    block = encode(request_.fields)
    cut = [block[i * len(block) // pieces:(i + 1) * len(block) // pieces] for i in range(pieces)]
    end = request_.body is None
    frames = [headers(1, cut[0], end_stream=end, end_headers=False)]
    frames += [continuation(1, part, end_headers=i == pieces - 2) for i, part in enumerate(cut[1:])]
    conn.send(*frames, b"" if end else data(1, request_.body, end_stream=True))
    answered(conn, 1, request_)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_generic_4_get_and_head(conn, method):
    conn.send(headers(1, encode([(":method", method)] + READYZ[1:]), end_stream=True))
    seen = conn.until(lambda f: f.stream == 1 and f.flags & END_STREAM or f.kind in (GOAWAY, RST_STREAM))
    head = [f for f in seen if f is not None and f.kind == HEADERS][0]
    assert head.fields[":status"] == "200"
    assert body_of(seen, 1) == (b"SERVING\n" if method == "GET" else b"")


@pytest.mark.parametrize("trailers", [False, True], ids=["post", "post-with-trailers"])
def test_generic_4_post(conn, trailers):
    conn.send(headers(1, encode(CHECK.fields)), data(1, EMPTY_REQUEST, end_stream=not trailers))
    if trailers:
        conn.send(headers(1, encode([("x-trailer", "1")]), end_stream=True))
    seen = conn.until(lambda f: f.kind == HEADERS and f.stream == 1 and f.flags & END_STREAM or f.kind in (GOAWAY, RST_STREAM))
    assert seen[-1].kind == HEADERS and seen[-1].fields.get("grpc-status") == "0", seen
    assert body_of(seen, 1) == SERVING_MESSAGE


# RFC 7541's representations (sections 6.1 to 6.3, 5.2), each decoded right.
HPACK_FORMS = {
    "indexed": b"\x82\x86\x84" + literal(":authority", "x"),                            # :method GET, :scheme http, :path /
    "incremental-indexed-name": b"\x82\x86\x84" + b"\x41" + string("x"),                # :authority from the static table
    "incremental-new-name": b"\x82\x86\x84" + b"\x41" + string("x") + b"\x40" + string("x-a") + string("1"),
    "without-indexing-indexed-name": b"\x82\x86\x84" + b"\x01" + string("x"),
    "without-indexing-new-name": b"\x82\x86\x84\x01" + string("x") + b"\x00" + string("x-a") + string("1"),
    "never-indexed-indexed-name": b"\x82\x86\x84\x11" + string("x"),
    "never-indexed-new-name": b"\x82\x86\x84\x11" + string("x") + b"\x10" + string("x-a") + string("1"),
    "table-size-update": b"\x20\x82\x86\x84\x01" + string("x"),
    "huffman": b"\x82\x86\x84\x01" + b"\x86\xa0\xe4\x1d\x13\x9d\x09",                    # "localhost", Huffman-coded
}


@pytest.mark.parametrize("form", HPACK_FORMS)
def test_generic_5_hpack_representations(conn, form):
    conn.send(headers(1, HPACK_FORMS[form], end_stream=True))
    assert response(conn, 1).fields[":status"] == "404"


def test_generic_5_hpack_dynamic_table_carries_over(conn):
    first = b"\x82\x86\x84" + b"\x40" + string(":authority") + string("pod")  # indexed as 62
    conn.send(headers(1, first, end_stream=True))
    response(conn, 1)
    conn.send(headers(3, b"\x82\x86\x84\xbe", end_stream=True))
    assert response(conn, 3).fields[":status"] == "404"


# --- 3.4: the connection preface -----------------------------------------------------------

def test_3_4_the_preface_and_settings_are_answered(endpoint):
    c = Conn(endpoint)
    alive(c)
    c.close()


def test_3_4_departure_an_invalid_preface_is_an_http1_request(endpoint):
    """Departure: RFC 9113 3.4 would end the connection with a PROTOCOL_ERROR GOAWAY. The port
    also speaks HTTP/1.1 to kubelet's httpGet, so bytes that are not the HTTP/2 preface are read
    as an HTTP/1.1 request: this one is not a valid request line, and is answered 400."""
    c = Conn(endpoint, handshake=False)
    c.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    deadline, got = time.monotonic() + WAIT, b""
    while not got.endswith(b"\n") and b"\r\n" not in got and time.monotonic() < deadline:
        c.s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = c.s.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"HTTP/1.1 400"), got
    c.close()


# --- 4.1 to 4.3: frames, their size, header compression ----------------------------------------

def test_4_1_an_unknown_frame_type_is_ignored(conn):
    conn.send(frame(0x16, 0, 0, b"ignore me"))
    alive(conn)


def test_4_1_undefined_flags_are_ignored(conn):
    conn.send(ping(b"flagged!", flags=0x16 & ~ACK))
    seen = conn.until(lambda f: f.kind == PING or f.kind == GOAWAY)
    assert seen[-1] is not None and seen[-1].kind == PING and seen[-1].flags & ACK and seen[-1].payload == b"flagged!"


@paths
def test_4_1_the_reserved_bit_is_ignored(conn, request_):
    f = bytearray(request_.frames(1, end_stream=request_.body is None))
    f[5] |= 0x80
    conn.send(bytes(f), b"" if request_.body is None else data(1, request_.body, end_stream=True))
    answered(conn, 1, request_)


@paths
def test_4_2_data_of_the_maximum_frame_size_is_accepted(conn, request_):
    assert conn.server_settings.get(INITIAL_WINDOW_SIZE, 65535) >= 16384, conn.server_settings
    fields = [(":method", "POST")] + request_.fields[1:]
    payload = (16379).to_bytes(5, "big") + b"\x0a" + b"\x00" * 16378 if request_ is CHECK else b"\0" * 16384
    conn.send(headers(1, encode(fields)), data(1, payload, end_stream=True))
    assert response(conn, 1).fields[":status"] in ("200", "404", "405")


def test_4_2_data_over_the_maximum_frame_size(conn):
    conn.send(headers(1, encode(CHECK.fields)), data(1, b"\0" * 16385))
    either_error(conn, 1, FRAME_SIZE_ERROR)


@paths
def test_4_2_headers_over_the_maximum_frame_size(conn, request_):
    """A frame that can change the connection's state (HEADERS) over the size: connection error."""
    block = encode(request_.fields + [("x-dummy", "x" * 16384)])
    conn.send(headers(1, block, end_stream=True))
    connection_error(conn, FRAME_SIZE_ERROR)


@paths
def test_4_3_an_invalid_header_block_fragment(conn, request_):
    conn.send(headers(1, encode(request_.fields) + b"\x00\x0a", end_stream=True))  # a literal cut short
    connection_error(conn, COMPRESSION_ERROR)


@paths
def test_4_3_priority_between_headers_and_continuation(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False), priority(1, 0, 15),
              continuation(1, encode([("x-dummy", "1")])))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_4_3_headers_of_another_stream_between_headers_and_continuation(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False),
              headers(3, encode(request_.fields), end_stream=True))
    connection_error(conn, PROTOCOL_ERROR)


# --- 5.1: stream states -----------------------------------------------------------------------

def test_5_1_idle_data(conn):
    conn.send(data(1, b"x"))
    connection_error(conn, PROTOCOL_ERROR)


def test_5_1_idle_rst_stream(conn):
    conn.send(rst_stream(1, 8))
    connection_error(conn, PROTOCOL_ERROR)


def test_5_1_idle_window_update(conn):
    conn.send(window_update(1, 100))
    connection_error(conn, PROTOCOL_ERROR)


def test_5_1_idle_continuation(conn):
    conn.send(continuation(1, encode(ROOT_GET.fields)))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_5_1_half_closed_remote_data(conn, request_):
    conn.send(request_.frames(1), data(1, b"x"))
    either_error(conn, 1, STREAM_CLOSED)


@paths
def test_5_1_half_closed_remote_headers(conn, request_):
    conn.send(request_.frames(1), headers(1, encode([("x-dummy", "1")]), end_stream=True))
    either_error(conn, 1, STREAM_CLOSED)


@paths
def test_5_1_half_closed_remote_continuation(conn, request_):
    conn.send(request_.frames(1), continuation(1, encode([("x-dummy", "1")])))
    either_error(conn, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@paths
@pytest.mark.parametrize("kind", ["data", "headers", "continuation"])
def test_5_1_closed_after_rst_stream(conn, request_, kind):
    conn.send(request_.frames(1, end_stream=False), rst_stream(1, 8))
    alive(conn)
    late = {"data": data(1, b"x"), "headers": headers(1, encode(request_.fields), end_stream=True),
            "continuation": continuation(1, encode([("x-dummy", "1")]))}[kind]
    conn.send(late)
    either_error(conn, 1, STREAM_CLOSED, *([PROTOCOL_ERROR] if kind == "continuation" else []))


@paths
@pytest.mark.parametrize("kind", ["data", "headers", "continuation"])
def test_5_1_closed_after_end_stream(conn, request_, kind):
    conn.send(request_.frames(1))
    conn.until(lambda f: f.stream == 1 and f.flags & END_STREAM and f.kind in (DATA, HEADERS))
    late = {"data": data(1, b"x"), "headers": headers(1, encode(request_.fields), end_stream=True),
            "continuation": continuation(1, encode([("x-dummy", "1")]))}[kind]
    conn.send(late)
    either_error(conn, 1, STREAM_CLOSED, *([PROTOCOL_ERROR] if kind == "continuation" else []))


@paths
def test_5_1_1_an_even_stream_identifier(conn, request_):
    conn.send(request_.frames(2))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_5_1_1_a_stream_identifier_below_the_last(conn, request_):
    conn.send(request_.frames(5))
    response(conn, 5)
    conn.send(request_.frames(3))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_5_1_2_streams_over_max_concurrent_streams_are_refused(conn, request_):
    cap = conn.server_settings.get(MAX_CONCURRENT_STREAMS)
    assert cap is not None and cap <= 100, conn.server_settings
    conn.send(*[request_.frames(1 + 2 * i, end_stream=False) for i in range(cap + 1)])
    last = 1 + 2 * cap
    seen = conn.until(lambda f: f.kind == GOAWAY or f.kind == RST_STREAM and f.stream == last)
    assert seen[-1] is not None and seen[-1].code in (PROTOCOL_ERROR, REFUSED_STREAM), seen


# --- 5.3 to 5.5: priority, error handling, extensions -----------------------------------------

@paths
def test_5_3_departure_headers_depending_on_itself_is_answered(conn, request_):
    """Departure: RFC 7540 5.3.1 made a stream depending on itself a PROTOCOL_ERROR. RFC 9113
    5.3 deprecated the priority scheme, and the endpoint reads a HEADERS frame's priority fields
    only to skip them: the request is answered."""
    end = request_.body is None
    conn.send(headers(1, encode(request_.fields), end, prio=(1, 15, False)),
              b"" if end else data(1, request_.body, end_stream=True))
    answered(conn, 1, request_)


def test_5_3_departure_priority_depending_on_itself_is_ignored(conn):
    """Departure: the same, for a PRIORITY frame; RFC 9113 5.3.2 lets a receiver ignore its
    contents, so only its length and stream are checked (6.3)."""
    conn.send(priority(1, 1, 15))
    alive(conn)


def test_5_4_1_a_connection_error_sends_goaway(conn):
    conn.send(ping(b"short", flags=0))
    connection_error(conn, FRAME_SIZE_ERROR)


@paths
def test_5_4_1_goaway_names_the_last_stream_processed(conn, request_):
    conn.send(request_.frames(1))
    response(conn, 1)
    conn.send(ping(stream=1))
    seen = conn.until(lambda f: f.kind == GOAWAY)
    assert seen[-1] is not None and seen[-1].code == PROTOCOL_ERROR, seen
    assert int.from_bytes(seen[-1].payload[:4], "big") & 0x7FFFFFFF == 1, seen[-1]


def test_5_5_an_unknown_extension_frame_is_ignored(conn):
    conn.send(frame(0xFF, 0xFF, 0, b"\xff" * 8), frame(0xFE, 0, 7, b"extension"))
    alive(conn)


@paths
def test_5_5_an_unknown_frame_inside_a_header_block(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False), frame(0xFF, 0, 1, b"x"),
              continuation(1, encode([("x-dummy", "1")])))
    connection_error(conn, PROTOCOL_ERROR)


# --- 6.1 DATA, 6.2 HEADERS, 6.3 PRIORITY, 6.4 RST_STREAM ------------------------------------------

def test_6_1_data_on_stream_0(conn):
    conn.send(data(0, b"x"))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_1_data_on_a_stream_neither_open_nor_half_closed_local(conn, request_):
    conn.send(request_.frames(1), data(1, b"x"))
    either_error(conn, 1, STREAM_CLOSED)


def test_6_1_data_with_a_pad_length_past_its_payload(conn):
    conn.send(headers(1, encode(CHECK.fields)), frame(DATA, END_STREAM | PADDED, 1, b"\x06" + EMPTY_REQUEST))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_2_headers_without_end_headers_then_priority(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False), priority(1, 0, 15))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_2_headers_of_another_stream_inside_a_header_block(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False),
              headers(3, encode(request_.fields), end_stream=True))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_2_headers_on_stream_0(conn, request_):
    conn.send(headers(0, encode(request_.fields), end_stream=True))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_2_headers_with_a_pad_length_past_its_payload(conn, request_):
    block = encode(request_.fields)
    conn.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([len(block) + 1]) + block))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_3_priority_on_stream_0(conn):
    conn.send(priority(0, 1, 15))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_3_priority_of_a_length_other_than_5(conn, request_):
    conn.send(request_.frames(1, end_stream=False), frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00"))
    either_error(conn, 1, FRAME_SIZE_ERROR)


def test_6_4_rst_stream_on_stream_0(conn):
    conn.send(rst_stream(0, 8))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_4_rst_stream_on_an_idle_stream(conn):
    conn.send(rst_stream(1, 8))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_4_rst_stream_of_a_length_other_than_4(conn, request_):
    conn.send(request_.frames(1, end_stream=False), frame(RST_STREAM, 0, 1, b"\x00\x00\x00"))
    connection_error(conn, FRAME_SIZE_ERROR)


# --- 6.5 SETTINGS ---------------------------------------------------------------------------

def test_6_5_settings_ack_with_a_payload(conn):
    conn.send(frame(SETTINGS, ACK, 0, b"\x00\x01\x00\x00\x10\x00"))
    connection_error(conn, FRAME_SIZE_ERROR)


def test_6_5_settings_on_a_stream(conn):
    conn.send(settings((INITIAL_WINDOW_SIZE, 100), stream=1))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_5_settings_of_a_length_not_a_multiple_of_6(conn):
    conn.send(frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"))
    connection_error(conn, FRAME_SIZE_ERROR)


def test_6_5_2_enable_push_neither_0_nor_1(conn):
    conn.send(settings((ENABLE_PUSH, 2)))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_5_2_initial_window_size_over_the_maximum(conn):
    conn.send(settings((INITIAL_WINDOW_SIZE, 1 << 31)))
    connection_error(conn, FLOW_CONTROL_ERROR)


@pytest.mark.parametrize("size", [16383, 1 << 24], ids=["below-16384", "above-2^24-1"])
def test_6_5_2_max_frame_size_out_of_range(conn, size):
    conn.send(settings((MAX_FRAME_SIZE, size)))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_5_2_an_unknown_setting_is_ignored(conn):
    conn.send(settings((0xFF, 1)))
    seen = conn.until(lambda f: f.kind == SETTINGS and f.flags & ACK or f.kind == GOAWAY)
    assert seen[-1] is not None and seen[-1].kind == SETTINGS, seen
    alive(conn)


@paths
def test_6_5_3_the_last_of_several_values_is_used(conn, request_):
    conn.send(settings((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)), request_.frames(1))
    seen = conn.until(lambda f: f.kind == DATA and f.stream == 1 or f.kind in (GOAWAY, RST_STREAM))
    assert seen[-1] is not None and seen[-1].kind == DATA and len(seen[-1].payload) == 1, seen


def test_6_5_3_settings_are_acknowledged(conn):
    conn.send(settings((HEADER_TABLE_SIZE, 4096)))
    seen = conn.until(lambda f: f.kind == SETTINGS and f.flags & ACK or f.kind == GOAWAY)
    assert seen[-1] is not None and seen[-1].kind == SETTINGS and seen[-1].flags & ACK, seen


# --- 6.7 PING, 6.8 GOAWAY, 6.9 WINDOW_UPDATE ------------------------------------------------------

def test_6_7_ping_is_acknowledged_with_its_payload(conn):
    alive(conn, b"\xff" * 8)


def test_6_7_a_ping_ack_is_not_answered(conn):
    conn.send(ping(b"unasked!", flags=ACK))
    seen = alive(conn, b"asked!!!")
    assert not [f for f in seen if f is not None and f.kind == PING and f.payload == b"unasked!"], seen


def test_6_7_ping_on_a_stream(conn):
    conn.send(ping(stream=1))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_7_ping_of_a_length_other_than_8(conn):
    conn.send(frame(PING, 0, 0, b"\x00" * 6))
    connection_error(conn, FRAME_SIZE_ERROR)


def test_6_8_goaway_on_a_stream(conn):
    conn.send(goaway(0, NO_ERROR, stream=1))
    connection_error(conn, PROTOCOL_ERROR)


def test_6_9_window_update_of_0_on_the_connection(conn):
    conn.send(window_update(0, 0))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_9_window_update_of_0_on_a_stream(conn, request_):
    conn.send(request_.frames(1, end_stream=False), window_update(1, 0))
    either_error(conn, 1, PROTOCOL_ERROR)


def test_6_9_window_update_of_a_length_other_than_4(conn):
    conn.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    connection_error(conn, FRAME_SIZE_ERROR)


@paths
def test_6_9_1_a_window_of_1_lets_1_octet_through(conn, request_):
    conn.send(settings((INITIAL_WINDOW_SIZE, 1)), request_.frames(1))
    seen = conn.until(lambda f: f.kind == DATA and f.stream == 1 or f.kind in (GOAWAY, RST_STREAM))
    assert seen[-1] is not None and seen[-1].kind == DATA and len(seen[-1].payload) == 1, seen


def test_6_9_1_the_connection_window_over_2_31_minus_1(conn):
    conn.send(window_update(0, 0x7FFFFFFF), window_update(0, 0x7FFFFFFF))
    connection_error(conn, FLOW_CONTROL_ERROR)


@paths
def test_6_9_1_a_stream_window_over_2_31_minus_1(conn, request_):
    conn.send(request_.frames(1, end_stream=False), window_update(1, 0x7FFFFFFF), window_update(1, 0x7FFFFFFF))
    either_error(conn, 1, FLOW_CONTROL_ERROR)


@paths
def test_6_9_2_initial_window_size_raised_after_headers(conn, request_):
    conn.send(settings((INITIAL_WINDOW_SIZE, 0)), request_.frames(1))
    response(conn, 1)
    conn.send(settings((INITIAL_WINDOW_SIZE, 1)))
    seen = conn.until(lambda f: f.kind == DATA and f.stream == 1 or f.kind in (GOAWAY, RST_STREAM))
    assert seen[-1] is not None and seen[-1].kind == DATA and len(seen[-1].payload) == 1, seen


@paths
def test_6_9_2_a_window_made_negative_by_settings(conn, request_):
    conn.send(settings((INITIAL_WINDOW_SIZE, 3)), request_.frames(1))
    seen = conn.until(lambda f: f.kind == DATA and f.stream == 1 or f.kind in (GOAWAY, RST_STREAM))
    assert seen[-1].kind == DATA and len(seen[-1].payload) == 3, seen
    conn.send(settings((INITIAL_WINDOW_SIZE, 1)))  # the stream's window: 1 - 3 = -2
    conn.until(lambda f: f.kind == SETTINGS and f.flags & ACK)
    conn.send(window_update(1, 3))                 # back to 1
    seen = conn.until(lambda f: f.kind == DATA and f.stream == 1 or f.kind in (GOAWAY, RST_STREAM))
    assert seen[-1] is not None and seen[-1].kind == DATA and len(seen[-1].payload) == 1, seen


def test_6_9_2_initial_window_size_over_2_31_minus_1(conn):
    conn.send(settings((INITIAL_WINDOW_SIZE, 0x80000000)))
    connection_error(conn, FLOW_CONTROL_ERROR)


# --- 6.10 CONTINUATION ------------------------------------------------------------------------

@paths
def test_6_10_several_continuations_within_the_header_list_limit(conn, request_):
    block = encode(request_.fields)
    extra = [encode([(f"x-dummy-{i}", "x" * 1000)]) for i in range(5)]
    end = request_.body is None
    conn.send(headers(1, block, end_stream=end, end_headers=False),
              *[continuation(1, part, end_headers=i == len(extra) - 1) for i, part in enumerate(extra)],
              b"" if end else data(1, request_.body, end_stream=True))
    answered(conn, 1, request_)


@paths
def test_6_10_departure_a_header_list_over_8_kib_is_a_compression_error(conn, request_):
    """Departure: RFC 9113 6.10 lets a header block run over HEADERS and any number of
    CONTINUATIONs, and 6.5.2 calls SETTINGS_MAX_HEADER_LIST_SIZE advisory: a larger list may
    still be processed. The endpoint advertises 8 KiB (a probe request is a few hundred bytes)
    and ends a connection whose list decodes past it with COMPRESSION_ERROR rather than keep
    decoding it. Here the block is small (3 KiB of CONTINUATIONs) and the list it decodes to
    is over 8 KiB: each field counts 32 octets more than its name and value (RFC 9113 6.5.2)."""
    assert conn.server_settings.get(MAX_HEADER_LIST_SIZE) == 8192, conn.server_settings
    extra = [encode([(f"x-{i:03}-{j}", "") for j in range(100)]) for i in range(3)]
    assert sum(map(len, extra)) < 8192
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False),
              *[continuation(1, part, end_headers=i == len(extra) - 1) for i, part in enumerate(extra)])
    connection_error(conn, COMPRESSION_ERROR)


@paths
def test_10_5_1_a_header_block_over_8_kib_is_refused_before_decoding(conn, request_):
    """RFC 9113 10.5.1: a server may refuse what it is not willing to keep; a header block
    larger than the list it would accept is not buffered, the connection is ended with
    ENHANCE_YOUR_CALM."""
    extra = [encode([(f"x-dummy-{i}", "x" * 16000)]) for i in range(3)]
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False),
              *[continuation(1, part, end_headers=i == len(extra) - 1) for i, part in enumerate(extra)])
    connection_error(conn, 0xB)


@paths
def test_6_10_continuation_followed_by_another_frame(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False),
              continuation(1, encode([("x-a", "1")]), end_headers=False), data(1, b"x"))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_10_continuation_on_stream_0(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=True, end_headers=False), continuation(0, encode([("x-a", "1")])))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_10_continuation_after_headers_with_end_headers(conn, request_):
    conn.send(request_.frames(1, end_stream=False), continuation(1, encode([("x-a", "1")])))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_10_continuation_after_continuation_with_end_headers(conn, request_):
    conn.send(headers(1, encode(request_.fields), end_stream=False, end_headers=False),
              continuation(1, encode([("x-a", "1")])), continuation(1, encode([("x-b", "1")])))
    connection_error(conn, PROTOCOL_ERROR)


@paths
def test_6_10_continuation_after_data(conn, request_):
    conn.send(headers(1, encode(CHECK.fields)), data(1, EMPTY_REQUEST), continuation(1, encode([("x-a", "1")])))
    connection_error(conn, PROTOCOL_ERROR)


# --- 7: error codes -----------------------------------------------------------------------------

def test_7_goaway_with_an_unknown_error_code_ends_quietly(conn):
    conn.send(goaway(0, 0xFF))
    seen = conn.until(lambda f: f.kind == GOAWAY and f.code != NO_ERROR)
    assert seen[-1] is None, f"not treated as an error: {seen}"


@paths
def test_7_rst_stream_with_an_unknown_error_code(conn, request_):
    conn.send(request_.frames(1, end_stream=False), rst_stream(1, 0xFF))
    alive(conn)


# --- 8: HTTP message exchanges, fields, server push ------------------------------------------

@paths
def test_8_1_a_second_headers_without_end_stream(conn, request_):
    conn.send(headers(1, encode(request_.fields)), headers(1, encode([("x-trailer", "1")])))
    either_error(conn, 1, PROTOCOL_ERROR)


def without(name):
    return lambda f: [x for x in f if x[0] != name]


MALFORMED = {
    "8.2.1-upper-case-name": lambda f: f + [("X-Upper", "1")],
    "8.3-unknown-pseudo-header": lambda f: f[:1] + [(":foo", "x")] + f[1:],
    "8.3-response-pseudo-header": lambda f: f[:1] + [(":status", "200")] + f[1:],
    "8.3-pseudo-header-after-a-regular-field": lambda f: without(":authority")(f) + [("x-a", "1"), (":authority", "x")],
    "8.2.2-connection-specific-field": lambda f: f + [("connection", "keep-alive")],
    "8.2.2-te-other-than-trailers": lambda f: without("te")(f) + [("te", "trailers, deflate")],
    "8.3.1-empty-path": lambda f: [(n, "" if n == ":path" else v) for n, v in f],
    "8.3.1-no-method": without(":method"),
    "8.3.1-no-scheme": without(":scheme"),
    "8.3.1-no-path": without(":path"),
    "8.3.1-repeated-method": lambda f: f[:1] + f[:1] + f[1:],
    "8.3.1-repeated-scheme": lambda f: f[:2] + f[1:2] + f[2:],
    "8.3.1-repeated-path": lambda f: f[:3] + f[2:3] + f[3:],
}


@paths
@pytest.mark.parametrize("case", MALFORMED)
def test_8_2_and_8_3_a_malformed_request_is_a_stream_protocol_error(conn, request_, case):
    end = request_.body is None
    conn.send(headers(1, encode(MALFORMED[case](list(request_.fields))), end_stream=end),
              b"" if end else data(1, request_.body, end_stream=True))
    stream_error(conn, 1, PROTOCOL_ERROR)


@paths
def test_8_1_a_pseudo_header_in_trailers(conn, request_):
    conn.send(headers(1, encode(request_.fields)), data(1, b"" if request_.body is None else request_.body),
              headers(1, encode([(":method", "POST")]), end_stream=True))
    stream_error(conn, 1, PROTOCOL_ERROR)


@pytest.mark.parametrize("pieces", [1, 2])
def test_8_1_1_content_length_other_than_the_data(conn, pieces):
    conn.send(headers(1, encode(CHECK.fields + [("content-length", "1")])),
              *[data(1, part) for part in ([EMPTY_REQUEST] if pieces == 1 else [EMPTY_REQUEST[:2], EMPTY_REQUEST[2:]])],
              data(1, b"", end_stream=True))
    stream_error(conn, 1, PROTOCOL_ERROR)


def test_8_4_push_promise_from_a_client(conn):
    conn.send(CHECK.frames(1, end_stream=False), frame(PUSH_PROMISE, END_HEADERS, 1, (2).to_bytes(4, "big") + encode(ROOT_GET.fields)))
    connection_error(conn, PROTOCOL_ERROR)


# --- RFC 7541: what a decoder must refuse ---------------------------------------------------------

HPACK_INVALID = {
    "2.3.3-indexed-field-past-the-tables": integer(70, 7, 0x80),
    "2.3.3-literal-name-index-past-the-tables": integer(70, 4, 0x00) + string("x"),
    "4.2-table-size-update-at-the-end": integer(0, 5, 0x20),
    "5.2-huffman-with-eos": b"\x00" + string("x-a") + b"\x84\xff\xff\xff\xff",
    "5.2-huffman-padding-over-7-bits": b"\x00" + string("x-a") + b"\x82\x1f\xff",
    "5.2-huffman-padding-not-eos": b"\x00" + string("x-a") + b"\x81\x18",
    "6.1-indexed-field-0": b"\x80",
    "6.3-table-size-update-over-the-setting": integer(4097, 5, 0x20),
}


@paths
@pytest.mark.parametrize("case", HPACK_INVALID)
def test_hpack_an_invalid_encoding_is_a_compression_error(conn, request_, case):
    bad = HPACK_INVALID[case]
    if case.startswith("6.3"):
        block = bad + encode(request_.fields)  # a size update belongs at the block's start
    else:
        block = encode(request_.fields) + bad
    conn.send(headers(1, block, end_stream=True))
    connection_error(conn, COMPRESSION_ERROR)
