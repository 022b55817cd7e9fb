"""The shipped binary alone in an empty root with only /proc, as in a scratch image."""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, GO_SERVER, server


@pytest.fixture
def scratch_root(tmp_path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    shutil.copy(BIN, root / "grpc-init")
    return root


def test_static_binary_probes_localhost_without_etc_hosts(scratch_root):
    assert not (scratch_root / "etc").exists()
    with server("go", listen="127.0.0.1:0") as (_, port):
        out = subprocess.run(["unshare", "--mount", "--pid", "--fork", f"--root={scratch_root}", "--mount-proc=/proc",
                              "/grpc-init", "grpc_health_probe", "-addr", f"localhost:{port}"],
                             capture_output=True, text=True, timeout=20)
        assert (out.returncode, out.stderr) == (0, "status: SERVING\n")


def test_binary_is_fully_static():
    out = subprocess.run(["file", "-L", str(BIN)], capture_output=True, text=True, timeout=10)
    assert "statically linked" in out.stdout, out.stdout


def test_readiness_gate_and_supervision_in_a_scratch_image(scratch_root):
    """The image's whole job: grpc-init as PID 1, the static grpc-go server as its child, the gate
    probing it through /proc/self/exe (nothing else is in the root), then a SIGTERM passed on."""
    shutil.copy(GO_SERVER, scratch_root / "server")
    proc = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", f"--root={scratch_root}", "--mount-proc=/proc",
                             "/grpc-init", "-ready-addr", "unix:///server.sock", "-ready-file", "/ready", "-ready-interval", "20ms",
                             "--", "/server", "-network", "unix", "-addr", "/server.sock"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # the first line grpc-init writes is the ready line
        assert line.startswith("[grpc-init] ready: unix:///server.sock reports SERVING"), line
        assert (scratch_root / "ready").read_text() == "SERVING\n"
    finally:
        # unshare's child is grpc-init, which forwards SIGTERM to the server, killed by it.
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            os.kill(int(f.read().split()[0]), 15)
        proc.communicate(timeout=15)
    assert proc.returncode == 128 + 15
