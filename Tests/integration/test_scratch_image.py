"""The shipped binary alone in an empty root with only /proc, as in a scratch image."""
import shutil
import subprocess

import pytest

from conftest import BIN, server


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
