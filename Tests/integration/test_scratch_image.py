"""The shipped binary alone in an empty root with only /proc, as in a scratch image."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import BIN, GO_SERVER, ROOT, LineReader, server


@pytest.fixture
def scratch_root(tmp_path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    shutil.copy(BIN, root / "grpc-init")
    return root


def in_root(root, args, proc_mounted=True):
    """`args` run in `root` as its own PID namespace, with /proc mounted or with none at all."""
    return ["unshare", "--mount", "--pid", "--fork", f"--root={root}"] + (["--mount-proc=/proc"] if proc_mounted else []) + args


def test_static_binary_probes_localhost_without_etc_hosts(scratch_root):
    assert not (scratch_root / "etc").exists()
    with server("go", listen="127.0.0.1:0") as (_, port):
        out = subprocess.run(["unshare", "--mount", "--pid", "--fork", f"--root={scratch_root}", "--mount-proc=/proc",
                              "/grpc-init", "grpc_health_probe", "-addr", f"localhost:{port}"],
                             capture_output=True, text=True, timeout=20)
        assert (out.returncode, out.stderr) == (0, "status: SERVING\n")


def test_without_proc_every_mode_runs(scratch_root):
    """No /proc at all (a sandbox that does not mount it): the runtime needs none to start, the
    arguments come from the C library, and probe and supervisor work as with it."""
    (scratch_root / "proc").rmdir()
    with server("go", listen="127.0.0.1:0") as (_, port):
        out = subprocess.run(in_root(scratch_root, ["/grpc-init", "grpc_health_probe", "-addr", f"localhost:{port}"], False),
                             capture_output=True, text=True, timeout=20)
        assert (out.returncode, out.stderr) == (0, "status: SERVING\n")
    out = subprocess.run(in_root(scratch_root, ["/grpc-init", "--", "/grpc-init", "-version"], False),
                         capture_output=True, text=True, timeout=20)
    version = subprocess.run([str(ROOT / "scripts" / "version.sh")], capture_output=True, text=True, check=True).stdout
    assert (out.returncode, out.stdout, out.stderr) == (0, f"grpc-init {version}", "")
    out = subprocess.run(in_root(scratch_root, ["/grpc-init", "--", "/grpc-init", "grpc_health_probe", "-addr", "127.0.0.1:1"], False),
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2, out.stderr
    assert "connect: connection refused" in out.stderr


def test_binary_is_fully_static():
    out = subprocess.run(["file", "-L", str(BIN)], capture_output=True, text=True, timeout=10)
    assert "statically linked" in out.stdout, out.stdout


@pytest.mark.parametrize("proc_mounted", [True, False], ids=["with-proc", "without-proc"])
def test_readiness_gate_and_supervision_in_a_scratch_image(scratch_root, proc_mounted):
    """The image's whole job: grpc-init as PID 1, the static grpc-go server as its child, the gate
    probing it through its own binary (nothing else is in the root), then a SIGTERM passed on.
    Without /proc too: the gate runs the binary by the path it was started by."""
    shutil.copy(GO_SERVER, scratch_root / "server")
    proc = subprocess.Popen(in_root(scratch_root, [
                                "/grpc-init", "-ready-addr", "unix:///server.sock", "-ready-file", "/ready", "-ready-interval", "20ms",
                                "--", "/server", "-network", "unix", "-addr", "/server.sock"], proc_mounted),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = LineReader(proc, proc.stderr).next(time.monotonic() + 20)  # grpc-init's first line is the ready line
        assert line.startswith("[grpc-init] ready: unix:///server.sock reports SERVING"), line
        assert (scratch_root / "ready").read_text() == "SERVING\n"
    finally:
        # unshare's child is grpc-init, which forwards SIGTERM to the server, killed by it.
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            os.kill(int(f.read().split()[0]), 15)
        proc.communicate(timeout=15)
    assert proc.returncode == 128 + 15


def test_the_config_free_gate_in_a_scratch_image(scratch_root):
    """No flags at all: the agent finds the server's port from /proc inside the scratch root."""
    shutil.copy(GO_SERVER, scratch_root / "server")
    proc = subprocess.Popen(in_root(scratch_root, ["/grpc-init", "--", "/server", "-addr", "127.0.0.1:0"], True),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        log = LineReader(proc, proc.stderr)
        found = log.next(time.monotonic() + 20)
        assert found.startswith("[grpc-init] health: found the gRPC server at 127.0.0.1:") and found.endswith(", plaintext"), found
        assert log.next(time.monotonic() + 20).startswith("[grpc-init] ready: 127.0.0.1:")
    finally:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            os.kill(int(f.read().split()[0]), 15)
        proc.communicate(timeout=15)
    assert proc.returncode == 128 + 15
