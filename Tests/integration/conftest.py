"""Shared helpers for the integration tests: the grpc-init binary, real gRPC peers, and
bounded waits (every wait here has a deadline; nothing sleeps for a fixed time)."""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from pki import PKI

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "Tests" / "peers"
BIN = Path(os.environ.get("GRPC_INIT_BIN", ROOT / ".build" / "release" / "grpc-init"))
PLAIN_BIN = Path(os.environ.get("GRPC_INIT_PLAIN_BIN", ROOT / ".build-notls" / "release" / "grpc-init"))
GO_SERVER = Path(os.environ.get("GRPC_INIT_GOSERVER", ROOT / ".build" / "peers" / "goserver"))


# Variables a host (a CI runner under systemd, a shell with tini's settings) may set that would
# change what grpc-init or the probe does; the suite's own (the binaries' paths) are kept.
SCRUBBED_PREFIXES = ("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_", "TINI_", "GRPC_INIT_", "SPIFFE_ENDPOINT_SOCKET",
                     "DUMB_INIT_")
KEPT = {"GRPC_INIT_BIN", "GRPC_INIT_PLAIN_BIN", "GRPC_INIT_GOSERVER"}


@pytest.fixture(scope="session", autouse=True)
def scrubbed_environment():
    """Every test, and every module's and session's fixture, starts from an environment the
    host's settings do not reach (a session fixture is set up before the others)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(SCRUBBED_PREFIXES) and name not in KEPT:
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def bindir(tmp_path_factory):
    """A directory with grpc-init and its probe symlink, as `grpc-init --install` makes it."""
    assert BIN.exists(), f"{BIN} is missing: build with `swift build -c release` first"
    d = tmp_path_factory.mktemp("bin")
    shutil.copy(BIN, d / "grpc-init")
    out = subprocess.run([str(d / "grpc-init"), "--install", str(d)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert os.readlink(d / "grpc_health_probe") == str(d / "grpc-init")
    return d


def assert_one_line_failure(r, code, starts, cause, within=1.0):
    """The probe ended with `code` and a single line starting `starts` and naming `cause`,
    `within` seconds of starting: at once, for the failures that can be known at once."""
    assert r.code == code, r
    assert len(r.lines) == 1, r
    assert r.lines[0].startswith(starts), r
    assert cause in r.lines[0], r
    assert r.elapsed < within, r


class Result:
    def __init__(self, code, stdout, stderr, elapsed):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.lines = stderr.splitlines()
        self.elapsed = elapsed

    def __repr__(self):
        return f"Result(code={self.code}, elapsed={self.elapsed:.3f}, stderr={self.stderr!r})"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The certificates of the TLS and SPIFFE tests, made once per run with the openssl command."""
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def probe(bindir):
    def run(*args, timeout=15, env=None):
        start = time.monotonic()
        out = subprocess.run([str(bindir / "grpc_health_probe"), *args], capture_output=True, text=True,
                             timeout=timeout, env=env)
        return Result(out.returncode, out.stdout, out.stderr, time.monotonic() - start)
    return run


class LineReader:
    """Lines from a process's stdout (or `stream`) with a deadline. Reads the raw descriptor:
    select() on a buffered file object misses lines already pulled into its buffer."""

    def __init__(self, proc, stream=None):
        self.proc = proc
        self.fd = (stream or proc.stdout).fileno()
        self.buffer = b""

    def next(self, deadline):
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line in time")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError(f"peer exited ({self.proc.poll()})")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode(errors="surrogateescape")  # bytes that are not UTF-8 kept as they came

    def until(self, text, deadline):
        """Reads lines until one equal to or starting with `text`; raises past `deadline`."""
        while not (line := self.next(deadline)).startswith(text):
            pass
        return line

    def rest(self, deadline):
        """Every line left until the end of the stream, which must come by `deadline`."""
        lines = []
        while True:
            try:
                lines.append(self.next(deadline))
            except EOFError:
                if self.buffer:
                    lines.append(self.buffer.decode())
                return lines


def read_line(proc, prefix, timeout=20.0):
    """The first stdout line of `proc` starting with `prefix`, waiting at most `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        line = proc.lines.next(deadline)
        if line.startswith(prefix):
            return line


@contextmanager
def running(argv, ready_prefix="READY ", env=None):
    # The peer's stderr goes to a file: a pipe nobody reads could fill and stall it.
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env)
    proc.lines = LineReader(proc)
    try:
        line = read_line(proc, ready_prefix)
        yield proc, line[len(ready_prefix):]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


@contextmanager
def server(kind, listen="127.0.0.1:0", **opts):
    """A real gRPC health server: kind is "python" (grpcio) or "go" (grpc-go); listen is
    HOST:PORT or unix:PATH. Yields (proc, port) for TCP, (proc, listen) for unix sockets."""
    if kind == "python":
        argv = [sys.executable, str(PEERS / "pyserver.py"), "--listen", listen]
        flag_prefix = "--"
    else:
        assert GO_SERVER.exists(), f"{GO_SERVER} is missing: the test command builds it"
        if listen.startswith("unix:"):
            argv = [str(GO_SERVER), "-network", "unix", "-addr", listen[len("unix:"):]]
        else:
            argv = [str(GO_SERVER), "-addr", listen]
        flag_prefix = "-"
    for key, value in opts.items():
        flag = flag_prefix + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    with running(argv) as (proc, where):
        yield proc, (listen if listen.startswith("unix:") else where.rsplit(":", 1)[-1])


@contextmanager
def raw_peer(mode, tls=None):
    """The hand-written peer; tls=(cert, key) serves TLS without ALPN. Yields its port, or with
    TLS (proc, port) so that the SNI lines it prints can be read."""
    argv = [sys.executable, str(PEERS / "rawpeer.py"), "--mode", mode]
    if tls:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    with running(argv) as (proc, port):
        yield (proc, port) if tls else port


def collect_lines(proc, prefix, until, timeout=10.0):
    """Reads `proc`'s stdout lines starting with `prefix` until `until(lines)` holds."""
    lines = []
    deadline = time.monotonic() + timeout
    while not until(lines):
        line = proc.lines.next(deadline)
        if line.startswith(prefix):
            lines.append(line)
    return lines


# The tests that take three seconds or more (pytest --durations), by module and function.
SLOW = {
    "test_container.py::test_release_files", "test_health_actions.py::test_a_server_flapping_its_status_cannot_make_pid1_a_log_pump",
    "test_fuzz.py::test_c_parsers_survive_a_short_fuzzing_pass",
    "test_health_actions.py::test_watchdog_pings_follow_the_servers_answers_and_stopping_is_said",
    "test_pid1_hostile.py::test_the_drain_outlasts_the_ready_timeout",
    "test_health_endpoint.py::test_idle_connections_and_a_slowloris_do_not_keep_probes_out",
    "test_manifests.py::test_manifest_probes_answer_serving", "test_agent_loop.py::test_a_stalled_tls_handshake_does_not_stop_the_endpoint",
    "test_health_actions.py::test_health_timeout_bounds_an_http_probes_wait",
    "test_tini_compat.py::test_tini_kill_process_group_set_at_all_turns_it_on",
    "test_supervisor.py::test_an_idle_supervisor_never_wakes_and_stays_small",
    "test_java_peer.py::test_gated_through_watch_with_strict_keepalive_enforcement",
    "test_metrics.py::test_a_real_prometheus_scrapes_each_transition",
}


def pytest_collection_modifyitems(config, items):
    """Marks each test with its groups: podman (it uses the podman fixture), root (its module
    makes PID namespaces or runs podman), slow (SLOW)."""
    privileged = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in privileged:
            text = path.read_text()
            privileged[path] = "unshare" in text or "nsenter" in text or "prlimit" in text
        if "podman" in item.fixturenames:
            item.add_marker(pytest.mark.podman)
            item.add_marker(pytest.mark.root)
        elif privileged[path]:
            item.add_marker(pytest.mark.root)
        if f"{path.name}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)
