"""The build with the TLS trait off (`swift build --disable-default-traits`): no OpenSSL inside,
plaintext probes as usual, -tls refused with a clear message."""
import os
import subprocess

import pytest

from conftest import BIN, PLAIN_BIN, ROOT, server


@pytest.fixture(scope="module")
def plain_probe(tmp_path_factory):
    assert PLAIN_BIN.exists(), f"{PLAIN_BIN} is missing: scripts/test.sh builds it"
    d = tmp_path_factory.mktemp("plain")
    os.symlink(PLAIN_BIN, d / "grpc_health_probe")
    return d / "grpc_health_probe"


def test_no_openssl_inside():
    symbols = subprocess.run(["nm", str(PLAIN_BIN)], capture_output=True, text=True, timeout=60).stdout
    assert " SSL_CTX_new" not in symbols
    assert "grpc_init_main" in symbols


def test_plaintext_probe_and_refused_tls(plain_probe):
    with server("go") as (_, port):
        out = subprocess.run([str(plain_probe), "-addr", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=10)
        assert (out.returncode, out.stderr) == (0, "status: SERVING\n")
        out = subprocess.run([str(plain_probe), "-addr", f"127.0.0.1:{port}", "-tls"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 1
        assert out.stderr == "error: -tls is not available: this grpc-init was built without TLS (the TLS package trait)\n"
        out = subprocess.run([str(plain_probe), "-addr", f"127.0.0.1:{port}", "-spiffe"], capture_output=True, text=True, timeout=10)
        assert (out.returncode, out.stderr) == (20, "failed to initialize tls credentials with spiffe. error=this grpc-init was "
                                                    "built without TLS (the TLS package trait)\n")


def test_the_link_order_names_only_what_the_binary_has():
    """scripts/link-order.txt places the probe's functions side by side; lld is told not to warn
    about names it lacks (the build without TLS lacks every TLS one by design), so this test does:
    every function of our own modules the list names is in the release binary."""
    ours = ("$s5Probe", "$s4Wire", "$s5HPACK", "$s6Client", "$s9Transport", "$s11SystemCalls", "$s5Flags", "$s6SPIFFE",
            "$s10Addressing", "$s5Agent", "$s10Supervisor", "$s8grpc_init")
    listed = {line for line in (ROOT / "scripts" / "link-order.txt").read_text().split() if line.startswith(ours)}
    symbols = set(subprocess.run(["nm", "--defined-only", str(BIN)], capture_output=True, text=True, check=True).stdout.split())
    missing = sorted(listed - symbols)
    assert not missing, f"{len(missing)} of our symbols are gone (run scripts/link-order.sh): {missing[:5]}"
