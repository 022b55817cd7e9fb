"""What one plaintext exec probe costs in user space, as callgrind counts it: unlike times,
the count is the same from run to run, so a change that makes the probe's path dearer (a
flag, the address, the answer) shows. scripts/bench-instructions.sh gives the figure
docs/performance.md cites; the budget below leaves it a few percent of room."""
import re
import shutil
import subprocess

import pytest

from conftest import server

#: User-space instructions of `grpc_health_probe -addr 127.0.0.1:PORT` against a SERVING grpc-go
#: server, from exec to exit. Another Swift toolchain or glibc moves the count without a change of
#: ours: measure again with scripts/bench-instructions.sh and set the budget about 5% above it.
BUDGET = 580_000


def test_a_plaintext_probe_runs_within_its_instruction_budget(bindir, tmp_path):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (scripts/install-deps.sh installs it)")
    # valgrind's DWARF reader gives up on this binary's debug info; the symbol table is enough.
    subprocess.run(["strip", "-g", "-o", str(tmp_path / "grpc-init"), str(bindir / "grpc-init")], check=True, timeout=60)
    (tmp_path / "grpc_health_probe").symlink_to("grpc-init")
    out = tmp_path / "probe.cg"
    with server("go") as (_, port):
        # The environment is the process's too: glibc reads every variable at start.
        r = subprocess.run([valgrind, "-q", "--tool=callgrind", f"--callgrind-out-file={out}",
                            str(tmp_path / "grpc_health_probe"), "-addr", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert (r.returncode, r.stderr) == (0, "status: SERVING\n"), r.stdout + r.stderr
    count = int(re.search(r"^summary: (\d+)$", out.read_text(), re.M).group(1))
    assert count <= BUDGET, f"a plaintext probe ran {count} instructions, over its budget of {BUDGET}"
