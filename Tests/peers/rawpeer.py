"""A hand-written HTTP/2 peer for what no real gRPC server does: malformed frames, stalls,
hostile sizes, TLS without ALPN, a malformed TLS handshake. Each connection gets the behaviour named by --mode. Prints
"READY <port>", and with --tls-cert "SNI <name or ->" for each handshake.
"""
import argparse
import socket
import ssl
import struct
import sys
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    def string(s):
        data = s.encode()
        out = bytearray()
        n = len(data)
        if n < 127:
            out.append(n)
        else:
            out.append(127)
            n -= 127
            while n >= 128:
                out.append((n & 0x7F) | 0x80)
                n >>= 7
            out.append(n)
        return bytes(out) + data
    return b"\x00" + string(name) + string(value)


def read_until_request(conn, preface=True):
    """Reads the client preface (unless it came already) and frames until a frame with
    END_STREAM (the request's DATA)."""
    buf = b""
    while preface and len(buf) < len(PREFACE):
        chunk = conn.recv(65536)
        if not chunk:
            return False
        buf += chunk
    buf = buf[len(PREFACE):] if preface else buf
    while True:
        while len(buf) < 9:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        while len(buf) < 9 + length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf += chunk
        ftype, flags = buf[3], buf[4]
        buf = buf[9 + length:]
        if ftype == 0 and flags & 1:
            return True


SETTINGS = frame(4, 0, 0)
OK_HEADERS = hpack_literal(":status", "200") + hpack_literal("content-type", "application/grpc")
GZIP_HEADERS = OK_HEADERS + hpack_literal("grpc-encoding", "gzip")
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
TRAILERS_OK = frame(1, 5, 1, hpack_literal("grpc-status", "0"))


def message(payload, compressed=False):
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(payload)) + payload


def data_frames(body, stream=1):
    """`body` as DATA frames of at most 16384 bytes (the client's SETTINGS_MAX_FRAME_SIZE)."""
    return b"".join(frame(0, 0, stream, body[i:i + 16384]) for i in range(0, len(body), 16384))


def gzip_bytes(payload):
    import gzip
    return gzip.compress(payload, mtime=0)


def flood(conn, unit):
    """Sends `unit` again and again until the client goes away."""
    block = unit * max(1, 65536 // len(unit))
    while True:
        conn.sendall(block)


# Modes whose answer is a fixed byte string after the SETTINGS exchange.
FIXED = {
    "serving": frame(1, 4, 1, OK_HEADERS) + frame(0, 0, 1, message(SERVING)) + TRAILERS_OK,
    "second-message": frame(1, 4, 1, OK_HEADERS) + frame(0, 0, 1, message(SERVING) + message(SERVING)) + TRAILERS_OK,
    "trailing-bytes": frame(1, 4, 1, OK_HEADERS) + frame(0, 0, 1, message(SERVING) + b"\x00\x00\x00") + TRAILERS_OK,
    # A gzip member whose deflate data is damaged (its first block claims the reserved type 3).
    "gzip-corrupt": frame(1, 4, 1, GZIP_HEADERS)
        + frame(0, 0, 1, message(gzip_bytes(SERVING)[:10] + b"\x07" + gzip_bytes(SERVING)[11:], True)) + TRAILERS_OK,
    "gzip-truncated": frame(1, 4, 1, GZIP_HEADERS) + frame(0, 0, 1, message(gzip_bytes(SERVING * 100)[:-12], True)) + TRAILERS_OK,
    "gzip-trailing": frame(1, 4, 1, GZIP_HEADERS) + frame(0, 0, 1, message(gzip_bytes(SERVING) + b"junk", True)) + TRAILERS_OK,
    # Two gzip members whose contents together are the response: valid gzip, as Go reads it.
    "gzip-multimember": frame(1, 4, 1, GZIP_HEADERS)
        + frame(0, 0, 1, message(gzip_bytes(b"\x08") + gzip_bytes(b"\x01"), True)) + TRAILERS_OK,
    "unknown-encoding": frame(1, 4, 1, OK_HEADERS + hpack_literal("grpc-encoding", "br"))
        + frame(0, 0, 1, message(b"\x00", True)) + TRAILERS_OK,
    "http-404": frame(1, 5, 1, hpack_literal(":status", "404") + hpack_literal("content-type", "text/plain")),
    "message-control": frame(1, 5, 1, OK_HEADERS + hpack_literal("grpc-status", "14")
                             + hpack_literal("grpc-message", "first%0Asecond%0D%1B[31mred")),
    "raw-control-value": frame(1, 5, 1, OK_HEADERS + hpack_literal("grpc-status", "14")
                               + hpack_literal("grpc-message", "raw \x1b[2J escape")),
    # Quotes, a backslash, control characters, bytes that are not UTF-8 and U+2028 in a message.
    "message-hostile": frame(1, 5, 1, OK_HEADERS + hpack_literal("grpc-status", "14")
                             + hpack_literal("grpc-message", '"quoted" back\\slash %1B[31m%0A%00 caf%FF%C3%28 %E2%80%A8end')),
    "goaway-control": frame(7, 0, 0, struct.pack(">II", 0, 2) + b"bye\nnext line\x1b[2J"),
    "priority-bad-length": frame(2, 0, 1, b"\x00\x00\x00\x00"),
    # SERVING after a group field (field 5: start group, a varint inside, end group).
    "group-field": frame(1, 4, 1, OK_HEADERS)
        + frame(0, 0, 1, message(b"\x2b\x08\x07\x2c" + SERVING)) + TRAILERS_OK,
    # status = -1: an int32 enum, sign-extended to ten bytes on the wire.
    "negative-status": frame(1, 4, 1, OK_HEADERS)
        + frame(0, 0, 1, message(b"\x08" + b"\xff" * 9 + b"\x01")) + TRAILERS_OK,
}

# Endless answers after the SETTINGS exchange: (what comes first, what is repeated).
FLOODS = {
    "flood-data": (frame(1, 4, 1, OK_HEADERS), frame(0, 0, 1)),
    "flood-unknown": (b"", frame(0xFA, 0, 0)),
    "flood-priority": (b"", frame(2, 0, 1, b"\x00\x00\x00\x00\x10")),
    "endless-messages": (frame(1, 4, 1, OK_HEADERS), data_frames(message(b"\x00" * (1 << 20)))),
    "gzip-bombs": (frame(1, 4, 1, GZIP_HEADERS), data_frames(message(gzip_bytes(b"\x00" * (4 << 20)), True))),
}

# Floods from a server that no longer reads what the client sends.
NOREAD_FLOODS = {
    "flood-ping-noread": frame(6, 0, 0, b"12345678"),
    "flood-settings-noread": frame(4, 0, 0),
}


def serve(conn, mode):
    try:
        if mode == "stall":  # accept, then never answer
            conn.recv(65536)
            threading.Event().wait(30)
            return
        if mode == "close":  # accept and close at once
            return
        if mode == "http1":
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        if mode == "malformed-server-hello":  # a TLS record whose ServerHello is one byte long
            conn.recv(65536)
            conn.sendall(b"\x16\x03\x03\x00\x05" + b"\x02\x00\x00\x01\x00")
            threading.Event().wait(5)
            return
        if mode == "ssh-banner":  # another protocol that speaks first
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            threading.Event().wait(5)
            return
        if mode == "random-bytes":
            conn.recv(65536)
            conn.sendall(bytes(range(0xF0, 0x100)) * 4)
            threading.Event().wait(5)
            return
        if mode == "garbage-preface":  # not an HTTP/2 frame at all
            conn.recv(65536)
            conn.sendall(b"\x00\x00\x04\x07\x00\x00\x00\x00\x00\xff\xff\xff\xff")  # GOAWAY too short
            threading.Event().wait(5)
            return
        conn.sendall(SETTINGS)
        if not read_until_request(conn):
            return
        conn.sendall(frame(4, 1, 0))  # SETTINGS ACK
        if mode in FIXED:
            conn.sendall(FIXED[mode])
            threading.Event().wait(5)
        elif mode in FLOODS:
            first, unit = FLOODS[mode]
            conn.sendall(first)
            flood(conn, unit)
        elif mode in NOREAD_FLOODS:
            flood(conn, NOREAD_FLOODS[mode])
        elif mode == "stall-rpc":
            threading.Event().wait(30)
        elif mode == "huge-frame":  # frame larger than the client's SETTINGS_MAX_FRAME_SIZE
            conn.sendall(struct.pack(">I", 1 << 20)[1:] + bytes([0, 0]) + struct.pack(">I", 1))
            threading.Event().wait(5)
        elif mode == "oversized-headers":  # one header far beyond the header list limit
            block = OK_HEADERS + hpack_literal("x-big", "a" * 200_000)
            conn.sendall(frame(1, 0, 1, block[:16384]))
            rest = block[16384:]
            while rest:
                piece, rest = rest[:16384], rest[16384:]
                conn.sendall(frame(9, 4 if not rest else 0, 1, piece))
            threading.Event().wait(5)
        elif mode == "huge-message":  # a length prefix of 2 GiB
            conn.sendall(frame(1, 4, 1, OK_HEADERS))
            conn.sendall(frame(0, 0, 1, b"\x00\x7f\xff\xff\xff" + b"\x00" * 100))
            threading.Event().wait(5)
        elif mode == "bad-hpack":
            conn.sendall(frame(1, 4, 1, b"\xff\xff\xff\xff\xff\xff\x7f"))
            threading.Event().wait(5)
        elif mode == "rst":
            conn.sendall(frame(3, 0, 1, struct.pack(">I", 2)))
            threading.Event().wait(5)
        elif mode in ("refused-once", "refused-twice"):  # REFUSED_STREAM: not processed, may be retried
            conn.sendall(frame(3, 0, 1, struct.pack(">I", 7)))
            if not read_until_request(conn, preface=False):
                return
            if mode == "refused-twice":
                conn.sendall(frame(3, 0, 3, struct.pack(">I", 7)))
            else:
                conn.sendall(frame(1, 4, 3, OK_HEADERS) + frame(0, 0, 3, message(SERVING)) + frame(1, 5, 3, hpack_literal("grpc-status", "0")))
            threading.Event().wait(5)
        elif mode == "goaway":
            conn.sendall(frame(7, 0, 0, struct.pack(">II", 0, 0) + b"going away"))
            threading.Event().wait(5)
        elif mode == "eof-mid-rpc":
            conn.sendall(frame(1, 4, 1, OK_HEADERS))
            conn.shutdown(socket.SHUT_RDWR)
        elif mode == "trailers-only-percent":
            block = hpack_literal(":status", "200") + hpack_literal("content-type", "application/grpc") \
                + hpack_literal("grpc-status", "14") + hpack_literal("grpc-message", "caf%C3%A9 down%21")
            conn.sendall(frame(1, 5, 1, block))
            threading.Event().wait(5)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    context = None
    if args.tls_cert:
        # No ALPN configured: the handshake completes without a protocol being selected.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        context.sni_callback = lambda sock, name, ctx: print(f"SNI {name or '-'}", flush=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"READY {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        if context:
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as e:
                print(f"HANDSHAKE-FAILED {e}", file=sys.stderr, flush=True)
                conn.close()
                continue
        threading.Thread(target=serve, args=(conn, args.mode), daemon=True).start()


if __name__ == "__main__":
    main()
