"""What several test modules start or take: a free TCP port, the SPIFFE Workload API, and
bounded waits on a process's exit and on the end of a stream (each fails saying what it waited
for)."""
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from conftest import PEERS, LineReader


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on at the moment: the kernel's pick, released at once."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def workload_api(pki, tmp_path, mode="serve", tcp=False, federated=(), extra_svids=(), rotate_to=None, timeout=20.0):
    """The SPIFFE Workload API (Tests/peers/workloadapi.py, on grpcio) handing out pki's probe
    SVID for spiffe://example.org/probe, on a unix socket in tmp_path (or TCP on loopback);
    yields (process, the SPIFFE_ENDPOINT_SOCKET value). process.lines reads what it prints
    (CALL, ROTATED); with rotate_to=(cert, key), a line "ROTATE" on process.stdin sends that
    SVID on every open stream."""
    cert, key = pki.spiffe_probe
    argv = [sys.executable, str(PEERS / "workloadapi.py"), "--socket", "tcp:127.0.0.1:0" if tcp else str(tmp_path / "agent.sock"),
            "--mode", mode, "--spiffe-id", "spiffe://example.org/probe", "--svid", str(cert), "--key", str(key),
            "--bundle", str(pki.spiffe_ca)]
    for name, roots in federated:
        argv += ["--federated", f"{name}={roots}"]
    for spiffe_id, (svid_cert, svid_key), roots in extra_svids:
        argv += ["--extra-svid", f"{spiffe_id},{svid_cert},{svid_key},{roots}"]
    if rotate_to:
        argv += ["--rotate-to", f"{rotate_to[0]},{rotate_to[1]}"]
    # Its stderr goes to a file: a pipe nobody reads could fill and stall it.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if rotate_to else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    proc.lines = LineReader(proc)
    try:
        try:
            ready = proc.lines.until("READY ", time.monotonic() + timeout)
        except (TimeoutError, EOFError) as e:
            log.seek(0)
            raise AssertionError(f"the Workload API did not say READY within {timeout} s ({e}): "
                                 f"{log.read().decode(errors='replace')[-2000:]}") from None
        yield proc, ready[len("READY "):]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def await_exit(pid, timeout, what):
    """Waits (on a pidfd) for the process `pid` to end, at most `timeout` seconds; fails naming
    `what` otherwise. Reaping it, when it is ours, is then a wait that cannot block."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    assert ready, f"{what} did not exit within {timeout} s"


def reap(pid, timeout, what):
    """Our child `pid` awaited for at most `timeout` seconds, then reaped; its wait status."""
    await_exit(pid, timeout, what)
    return os.waitpid(pid, 0)[1]


def read_to_end(stream, timeout, what):
    """Everything left on `stream` (a pipe, read from its descriptor) until every writer has
    closed it, waiting at most `timeout` seconds for that; fails naming `what` otherwise."""
    fd, data = stream.fileno(), b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk
    raise AssertionError(f"{what} was not closed within {timeout} s (read so far: {data[-500:]!r})")


def protobuf_fields(data):
    """A protobuf message's (field number, value) pairs in order: varints as ints, the other wire
    types as their bytes."""
    at = 0

    def varint():
        nonlocal at
        value, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value
    while at < len(data):
        key = varint()
        kind = key & 7
        if kind == 0:
            value = varint()
        elif kind in (1, 2, 5):
            size = {1: 8, 2: None, 5: 4}[kind]
            size = varint() if size is None else size
            value, at = data[at:at + size], at + size
        else:
            raise ValueError(f"wire type {kind}")
        yield key >> 3, value
