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
    """scripts/link-order.txt places the probe's functions side by side. lld warns about every
    name it lists that the binary lacks, and nothing silences that: a stale list fails here, in
    words, before anyone has to read a build log. Every name listed is one the release binary
    defines, and the list of the build without TLS names only what that build defines."""
    for name, binary in (("link-order.txt", BIN), ("link-order-notls.txt", PLAIN_BIN)):
        listed = (ROOT / "scripts" / name).read_text().split()
        assert len(listed) > 1000
        symbols = set(subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True, check=True,
                                    timeout=60).stdout.split())
        missing = sorted(set(listed) - symbols)
        assert not missing, f"{name}: {len(missing)} names are gone (run scripts/link-order.sh): {missing[:5]}"
    package = (ROOT / "Package.swift").read_text()
    assert "--symbol-ordering-file" in package and "no-warn-symbol-ordering" not in package
