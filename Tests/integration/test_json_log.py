"""-log-format json: every line grpc-init writes is one JSON object (time, level, msg and the
event's typed fields), whatever a peer put in its text, whether stderr is read or not; the same
events as the text lines, which stay as they were."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from conftest import PEERS, LineReader, raw_peer, server
from test_readiness import go_server, py_server
from test_supervisor import MODES, argv, drain, full_pipe, supervisor_pid

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEVELS = {"debug", "info", "warning", "error"}


def parse(raw):
    """One stderr line as bytes: strict UTF-8, one JSON object with the fields every line has."""
    record = json.loads(raw.decode("utf-8"))
    assert isinstance(record, dict), raw
    assert list(record)[:3] == ["time", "level", "msg"], raw
    assert TIME.match(record["time"]), raw
    stamp = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs(stamp.timestamp() - time.time()) < 120, raw
    assert record["level"] in LEVELS, raw
    assert isinstance(record["msg"], str) and not any(ord(c) < 0x20 for c in record["msg"]), raw
    return record


class Records:
    """grpc-init's stderr as JSON records, read with a deadline; every line is checked."""

    def __init__(self, proc, stream):
        self.proc = proc
        self.fd = stream.fileno()
        self.buffer = b""
        self.seen = []

    def next(self, deadline):
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line in time; seen: {self.seen}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError(f"stderr ended; seen: {self.seen}")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\n", 1)
        record = parse(raw)
        self.seen.append(record)
        return record

    def until(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while not predicate(record := self.next(deadline)):
            pass
        return record

    def rest(self, timeout=20):
        deadline = time.monotonic() + timeout
        records = []
        try:
            while True:
                records.append(self.next(deadline))
        except EOFError:
            assert self.buffer == b"", f"half a line at the end: {self.buffer!r}"
        return records


def launch(bindir, mode, args, command, stdin=None, env=None):
    proc = subprocess.Popen(argv(bindir, mode, [*args, "--", *command]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=stdin, env=env)
    return proc, LineReader(proc), Records(proc, proc.stderr)


def msg_starts(prefix):
    return lambda r: r["msg"].startswith(prefix)


def set_status(proc, status):
    proc.stdin.write(f"SET - {status}\n".encode())
    proc.stdin.flush()


@pytest.mark.parametrize("mode", MODES)
def test_a_gate_run_in_json(bindir, mode):
    """Ready, NOT_SERVING, SIGTERM, the exit: each line an object with its typed fields."""
    proc, _, log = launch(bindir, mode, ["-log-format", "json", "-v"], go_server("-control"), stdin=subprocess.PIPE)
    try:
        spawned = log.until(msg_starts("spawned "))
        assert spawned["level"] == "debug" and spawned["command"].endswith("goserver") and isinstance(spawned["pid"], int)
        found = log.until(msg_starts("health: found the gRPC server at "))
        assert found["level"] == "info" and found["reach"] == "plaintext" and found["server"].startswith("127.0.0.1:")
        ready = log.until(msg_starts("ready: "))
        assert ready["level"] == "info" and ready["status"] == "SERVING" and ready["server"] == found["server"]
        assert isinstance(ready["after_seconds"], (int, float)) and 0 <= ready["after_seconds"] < 20
        set_status(proc, "NOT_SERVING")
        down = log.until(msg_starts("health: "))
        assert down == {**down, "level": "info", "msg": "health: NOT_SERVING (was SERVING)", "reason": "status",
                        "status": "NOT_SERVING", "was_serving": True}
        os.kill(supervisor_pid(proc, mode), signal.SIGTERM)
        forwarded = log.until(msg_starts("forwarding SIGTERM"))
        assert (forwarded["level"], forwarded["signal"], forwarded["signal_number"]) == ("debug", "SIGTERM", 15)
        assert forwarded["pid"] == spawned["pid"]
        ended = log.until(msg_starts(f"child pid {spawned['pid']} "))
        assert ended["pid"] == spawned["pid"]
        assert ended.get("exit_code") is not None or ended.get("signal") == "SIGTERM", ended
        log.rest()
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)
    assert proc.returncode in (0, 143)


def events(bindir, log_format):
    """The events of one gate run (ready, NOT_SERVING, SERVING again) as (level, msg),
    numbers masked (pids, ports and durations differ from run to run)."""
    proc = subprocess.Popen([str(bindir / "grpc-init"), "-log-format", log_format, "--", *go_server("-control")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE)
    log = LineReader(proc, proc.stderr)
    deadline = time.monotonic() + 20
    lines = []

    def until(text):
        while True:
            line = log.next(deadline)
            lines.append(line)
            if text in line:
                return

    try:
        until("ready: ")
        set_status(proc, "NOT_SERVING")
        until("(was SERVING)")
        set_status(proc, "SERVING")
        until("SERVING (was ")
        # What follows SIGTERM races the server's shutdown (the Watch may end first): checked
        # to parse, not compared.
        proc.send_signal(signal.SIGTERM)
        after = log.rest(deadline)
        if log_format == "json":
            [parse(line.encode()) for line in after]
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)
    mask = lambda text: re.sub(r"\d+(\.\d+)?(ms|µs|s)?", "N", text)
    if log_format == "json":
        levels = {"info": "", "warning": "warning: ", "error": "error: "}
        return [(levels[r["level"]], mask(r["msg"])) for r in map(lambda l: parse(l.encode()), lines)]
    out = []
    for line in lines:
        assert line.startswith("[grpc-init] "), line
        text = line[len("[grpc-init] "):]
        level = next((p for p in ("warning: ", "error: ") if text.startswith(p)), "")
        out.append((level, mask(text[len(level):])))
    return out


def test_text_and_json_say_the_same_events(bindir):
    # Whether another grpc-init on this host holds the local probe socket's name is not the run's.
    text, json_events = ([e for e in events(bindir, f) if not e[1].startswith("local probe socket")] for f in ("text", "json"))
    assert [m for _, m in text][-3:] == ["ready: N.N:N reports SERVING, N after start", "health: NOT_SERVING (was SERVING)",
                                         "health: SERVING (was NOT_SERVING)"], text
    assert text == json_events


def test_the_text_lines_are_unchanged(bindir):
    """The default is text, line for line as before."""
    proc = subprocess.run([str(bindir / "grpc-init"), "-v", "-ready=false", "--", "sh", "-c", "exit 3"],
                          capture_output=True, timeout=20)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 3
    assert re.fullmatch(r"\[grpc-init\] spawned sh as pid \d+", lines[0]), lines
    assert re.fullmatch(r"\[grpc-init\] child pid \d+ exited with status 3", lines[1]), lines
    assert len(lines) == 2, lines


HOSTILE_MESSAGE = '"quoted" back\\slash \x1b[31m\n\x00 caf\ufffd\ufffd( \u2028end'


def test_a_hostile_status_message_gives_valid_json_lines(bindir):
    """A server's status message with quotes, a backslash, control characters, bytes that are
    not UTF-8 and U+2028: every line still parses, the field carries the text exactly (the bytes
    that were not UTF-8 replaced), the message says it as the text line does."""
    with raw_peer("message-hostile") as port:
        proc, _, log = launch(bindir, "subreaper", ["-log-format", "json", "-v", "-ready-addr", f"127.0.0.1:{port}"],
                              [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        try:
            # The peer ends the Watch with its status: the Watch's end is the reason.
            record = log.until(lambda r: r.get("reason") == "watchEnded")
            assert record["grpc_message"] == HOSTILE_MESSAGE, record
            assert (record["grpc_code"], record["grpc_code_number"], record["from_server"]) == ("Unavailable", 14, True)
            assert record["msg"] == ("not ready yet: Health/Watch ended: rpc error: code = Unavailable desc = "
                                     '"quoted" back\\slash \\x1b[31m\\n\\x00 caf\ufffd\ufffd( \u2028end'), record
            proc.send_signal(signal.SIGTERM)
            log.rest()
        finally:
            proc.stdin.close()
            proc.wait(timeout=20)


HOSTILE_SERVICE = 'we"ird\\ \x1b[2J\tname\x7f'


def test_a_hostile_service_name_gives_valid_json_lines(bindir):
    """A grpcio server's service whose name has quotes, a backslash and control characters."""
    proc, _, log = launch(bindir, "subreaper", ["-log-format", "json", "-ready-service", HOSTILE_SERVICE],
                          py_server("--services", f"{HOSTILE_SERVICE}=SERVING"))
    try:
        ready = log.until(msg_starts("ready: "))
        assert ready["service"] == HOSTILE_SERVICE, ready
        assert ready["msg"].endswith(' (service "we\\"ird\\\\ \\x1b[2J\\tname\\x7f") reports SERVING, '
                                     + ready["msg"].rsplit(", ", 1)[1]), ready
        proc.send_signal(signal.SIGTERM)
        log.rest()
    finally:
        proc.wait(timeout=20)


def reporter(bindir, stderr):
    """grpc-init -v in JSON supervising the signal reporter, its log on `stderr` (closed here)."""
    proc = subprocess.Popen([str(bindir / "grpc-init"), "-log-format", "json", "-v", "-ready=false", "--",
                             sys.executable, str(PEERS / "signal_reporter.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    os.close(stderr)
    lines = LineReader(proc)
    assert lines.next(time.monotonic() + 20).startswith("READY ")
    return proc, lines


def test_a_full_stderr_pipe_never_gets_half_a_json_line(bindir):
    """stderr is a full pipe nobody reads: the lines that cannot be written are dropped whole and
    counted, and the count is one JSON line of its own once the pipe is read again."""
    read_end, write_end = full_pipe()
    proc, lines = reporter(bindir, write_end)
    try:
        for signo in (signal.SIGUSR1, signal.SIGHUP):
            proc.send_signal(signo)
            assert lines.next(time.monotonic() + 5) == f"GOT {signo}"
        filler = drain(read_end)
        # grpc-init forwards a signal before it logs it: its line about SIGHUP may come once the
        # drain made room. Whatever it wrote follows the filler whole.
        written = filler.lstrip(b"x")
        assert written == b"" or written.endswith(b"\n"), written
        proc.send_signal(signal.SIGUSR2)
        assert lines.next(time.monotonic() + 5) == f"GOT {signal.SIGUSR2}"
        deadline = time.monotonic() + 5
        log = written
        while b"forwarding SIGUSR2" not in log:
            assert time.monotonic() < deadline, log
            select.select([read_end], [], [], 0.1)
            log += drain(read_end)
        assert log.endswith(b"\n"), log
        records = [parse(raw) for raw in log.splitlines()]
        notices = [r for r in records if "dropped" in r]
        assert len(notices) == 1, records
        notice = notices[0]
        assert notice["level"] == "warning" and 1 <= notice["dropped"] <= 3, records
        assert notice["msg"] == f"{notice['dropped']} log lines dropped: stderr was not being read"
        assert records[-1]["signal"] == "SIGUSR2"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        os.close(read_end)
    assert proc.returncode == 0


def test_a_socket_that_takes_part_of_a_line_gets_the_rest_before_the_next(bindir):
    """stderr is a stream socket with a small buffer that nobody reads for a while: a long line
    that goes out only in part is finished before any other, so the reader never sees half a
    JSON object, and the lines that could not go out at all are counted."""
    reader, writer = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the kernel's least
    # Services whose names make each line about them longer than the buffer takes at once.
    names = ["a" * 1800, "b" * 1800]
    args = ["-log-format", "json", "-v", "-ready-service", names[0], "-ready-service", names[1]]
    proc = subprocess.Popen([str(bindir / "grpc-init"), *args, "--", *py_server("--services", ",".join(f"{n}=SERVING" for n in names))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=writer.fileno())
    writer.close()
    reader.setblocking(False)
    log = b""

    def read_all():
        nonlocal log
        try:
            while chunk := reader.recv(1 << 16):
                log += chunk
        except BlockingIOError:
            pass

    def await_text(text, timeout=20):
        deadline = time.monotonic() + timeout
        while text not in log:
            assert time.monotonic() < deadline, log[-300:]
            select.select([reader], [], [], 0.1)
            read_all()

    try:
        # Read all along: lines longer than the buffer go out in parts, each finished before the
        # next (a line met by a buffer nobody reads is dropped whole instead, and counted).
        lines = LineReader(proc)
        # A line about a long name goes out (in parts); the lines after it may meet a full buffer
        # and be dropped whole (counted): which do is the reader's timing.
        await_text(names[0].encode())
        proc.send_signal(signal.SIGTERM)
        # Read on while grpc-init ends: at exit it waits a bounded while for a reader to take
        # the rest of a line, and this reader takes it.
        deadline = time.monotonic() + 20
        while proc.poll() is None:
            assert time.monotonic() < deadline, "grpc-init did not end"
            select.select([reader], [], [], 0.05)
            read_all()
    finally:
        # Whatever failed above, grpc-init is not left running (its local probe socket would
        # stand in the next tests' way).
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    reader.setblocking(True)
    reader.settimeout(10)
    while chunk := reader.recv(1 << 16):
        log += chunk
    reader.close()
    assert log.endswith(b"\n"), log[-200:]
    records = [parse(raw) for raw in log.splitlines()]
    # A line about a long name (longer than the buffer takes at once) went out whole.
    assert any(n in str(v) for r in records for v in r.values() for n in names), records


def test_a_flag_error_in_json_is_one_line(bindir):
    out = subprocess.run([str(bindir / "grpc-init"), "-log-format", "json", "-bogus", "--", "true"],
                         capture_output=True, timeout=10)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    record = parse(lines[0])
    assert (record["level"], record["msg"]) == ("error", "flag provided but not defined: -bogus")
    assert out.stdout == b""


@pytest.mark.parametrize("args,env,message", [
    (["-log-format", "yaml"], {}, 'invalid value "yaml" for -log-format: want text or json'),
    ([], {"GRPC_INIT_LOG_FORMAT": "yaml"}, 'invalid value "yaml" for GRPC_INIT_LOG_FORMAT: want text or json'),
    ([], {"GRPC_INIT_LOG_FORMAT": "json", "GRPC_INIT_GRACE": "-1s"}, "GRPC_INIT_GRACE must not be negative (specified: -1s)"),
])
def test_a_bad_format_is_one_line(bindir, args, env, message):
    out = subprocess.run([str(bindir / "grpc-init"), *args, "--", "true"], capture_output=True, timeout=10,
                         env={**os.environ, **env})
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert parse(lines[0])["msg"] == message


def test_an_exec_failure_in_json(bindir):
    out = subprocess.run([str(bindir / "grpc-init"), "-log-format", "json", "--", "/nonexistent/x\"y"],
                         capture_output=True, timeout=10, env={**os.environ, "GRPC_INIT_READY": "false"})
    assert out.returncode == 127
    records = [parse(raw) for raw in out.stderr.splitlines()]
    assert records == [{**records[0], "level": "error", "msg": 'cannot run /nonexistent/x"y: No such file or directory',
                        "command": '/nonexistent/x"y', "call": "exec", "error": "No such file or directory", "exit_code": 127}]
