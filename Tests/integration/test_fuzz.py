"""The short pass of the C fuzz targets (what parses input in C: TLSShim's PEM/base64/DER walker
and CShim's /proc/self/maps parser), a few seconds each over the kept corpus. The Swift
conversation fuzzing's short pass is FuzzTests in `swift test`; scripts/fuzz.sh runs the long
pass of all of them."""
import re
import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.parametrize("target", ["pem", "maps"])
def test_c_parsers_survive_a_short_fuzzing_pass(target):
    if not shutil.which("clang"):
        pytest.skip("no clang with libFuzzer on PATH (the Swift toolchain's)")
    out = subprocess.run([str(ROOT / "scripts" / "fuzz.sh"), "4", target], capture_output=True, text=True, timeout=300, cwd=ROOT)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    runs = [int(n) for n in re.findall(r"stat::number_of_executed_units: (\d+)", log)]
    assert runs and runs[0] > 1000, log[-3000:]
