"""-tls against grpcio and grpc-go servers with certificates made at test time. Every failure
must come back at once (well before the 5 s connect timeout), exit 2, naming its cause."""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import assert_one_line_failure, raw_peer, read_line, server
from pki import PKI

KINDS = ["python", "go"]
FAST = 1.0  # seconds: "at once", against a 5 s connect timeout


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


def tls_server(kind, pair, client_ca=None, **opts):
    cert, key = pair
    extra = {"tls_cert": cert, "tls_key": key}
    if client_ca:
        extra["tls_client_ca"] = client_ca
    return server(kind, **extra, **opts)


def check(probe, port, *args, host="localhost", env=None):
    return probe("-addr", f"{host}:{port}", "-tls", "-connect-timeout", "5s", *args, env=env)


def fails_fast(r, port, cause, host="localhost"):
    assert_one_line_failure(r, 2, f'error: failed to connect service at "{host}:{port}": ', cause, within=FAST)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("leaf", ["rsa", "ecdsa-through-intermediate"])
def test_verified_tls(probe, pki, kind, leaf):
    pair = pki.server_rsa if leaf == "rsa" else pki.server_ecdsa
    with tls_server(kind, pair) as (_, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca))
        assert (r.code, r.lines) == (0, ["status: SERVING"])
        # An IP target is checked against the certificate's IP SANs.
        assert check(probe, port, "-tls-ca-cert", str(pki.ca), host="127.0.0.1").code == 0


@pytest.mark.parametrize("kind", KINDS)
def test_system_roots_from_ssl_cert_file(probe, pki, kind):
    with tls_server(kind, pki.server_ecdsa) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE=str(pki.ca), SSL_CERT_DIR="/nonexistent")
        assert check(probe, port, env=env).lines == ["status: SERVING"]
        # Without it, the system roots do not know the test CA.
        fails_fast(check(probe, port), port, "x509: certificate signed by unknown authority")


def test_roots_are_found_among_many(probe, pki, tmp_path):
    """A system-sized bundle with the test CA in it, and a server that sends only its leaf: the
    intermediate and the root are both looked up by subject in the bundle."""
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = tmp_path / "bundle.pem"
    bundle.write_text((system.read_text() if system.exists() else "") + (pki.dir / "intermediate.pem").read_text()
                      + pki.ca.read_text())
    with tls_server("go", pki.server_ecdsa_leaf_only) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR="/nonexistent")
        assert check(probe, port, env=env).lines == ["status: SERVING"]
        assert check(probe, port, "-tls-ca-cert", str(bundle)).lines == ["status: SERVING"]
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port, "x509: certificate signed by unknown authority")


def test_roots_from_a_hashed_ssl_cert_dir(probe, pki, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "test-root.pem").write_text(pki.ca.read_text())
    subprocess.run(["openssl", "rehash", str(certs)], check=True, capture_output=True, timeout=30)
    with tls_server("python", pki.server_rsa) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE="/nonexistent", SSL_CERT_DIR=f"/nonexistent:{certs}")
        assert check(probe, port, env=env).lines == ["status: SERVING"]


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_authority(probe, pki, kind):
    with tls_server(kind, pki.server_untrusted) as (_, port):
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port,
                   f"tls: failed to verify certificate: x509: certificate signed by unknown authority (trusted roots: {pki.ca})")


@pytest.mark.parametrize("kind", KINDS)
def test_expired_certificate(probe, pki, kind):
    with tls_server(kind, pki.server_expired) as (_, port):
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port,
                   "tls: failed to verify certificate: x509: certificate has expired (not valid after Jan  2 00:00:00 2020 GMT)")


@pytest.mark.parametrize("kind", KINDS)
def test_name_mismatch_and_server_name_override(probe, pki, kind):
    with tls_server(kind, pki.server_other_name) as (_, port):
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port,
                   "x509: certificate is valid for other.example, *.other.example, not localhost")
        r = check(probe, port, "-tls-ca-cert", str(pki.ca), "-tls-server-name", "api.other.example")
        assert (r.code, r.lines) == (0, ["status: SERVING"])


@pytest.mark.parametrize("kind", KINDS)
def test_ip_san_only_certificate(probe, pki, kind):
    with tls_server(kind, pki.server_ip_only) as (_, port):
        assert check(probe, port, "-tls-ca-cert", str(pki.ca), host="127.0.0.1").lines == ["status: SERVING"]
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port, "x509: certificate is valid for 127.0.0.1, not localhost")


@pytest.mark.parametrize("kind", KINDS)
def test_no_verify(probe, pki, kind):
    with tls_server(kind, pki.server_untrusted) as (_, port):
        r = check(probe, port, "-tls-no-verify", "-v")
        assert r.code == 0, r
        assert "  > no-verify=true " in r.lines
        assert any(l.startswith("tls: TLSv1.") and ", ALPN h2, server certificate NOT verified (-tls-no-verify)" in l for l in r.lines), r


@pytest.mark.parametrize("kind", KINDS)
def test_tls_against_a_plaintext_server(probe, kind):
    with server(kind) as (_, port):
        r = check(probe, port, "-tls-no-verify")
        fails_fast(r, port, "(is the server speaking plaintext? try without -tls)")


@pytest.mark.parametrize("kind", KINDS)
def test_plaintext_against_a_tls_server(probe, pki, kind):
    with tls_server(kind, pki.server_rsa) as (_, port):
        r = probe("-addr", f"localhost:{port}", "-connect-timeout", "5s")
        assert r.code == 2 and r.elapsed < FAST, r
        assert "expects a TLS connection (use -tls)" in r.lines[0] or "a TLS server does this to plaintext clients (try -tls)" in r.lines[0], r


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("client", ["rsa_pkcs1", "rsa_pkcs8", "ec_sec1"])
def test_mutual_tls(probe, pki, kind, client):
    cert, key = getattr(pki, "client_" + client)
    with tls_server(kind, pki.server_rsa, client_ca=pki.ca) as (_, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca), "-tls-client-cert", str(cert), "-tls-client-key", str(key))
        assert (r.code, r.lines) == (0, ["status: SERVING"])


def test_mutual_tls_with_ed25519_key(probe, pki):
    cert, key = pki.client_ed25519
    with tls_server("go", pki.server_rsa, client_ca=pki.ca) as (_, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca), "-tls-client-cert", str(cert), "-tls-client-key", str(key))
        assert (r.code, r.lines) == (0, ["status: SERVING"])


@pytest.mark.parametrize("kind,cause", [
    ("python", "tls: the server requires a client certificate and closed the connection; none was given"),
    ("go", "tls: the server requires a client certificate and closed the connection (remote error: tls: bad certificate); none was given"),
])
def test_missing_client_certificate(probe, pki, kind, cause):
    with tls_server(kind, pki.server_rsa, client_ca=pki.ca) as (_, port):
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port, cause)


@pytest.mark.parametrize("kind,cause", [
    ("python", "the server asked for a client certificate and closed the connection after receiving"),
    ("go", "the server asked for a client certificate and closed the connection (remote error: tls: bad certificate) after receiving"),
])
def test_rejected_client_certificate(probe, pki, kind, cause):
    cert, key = pki.client_untrusted
    with tls_server(kind, pki.server_rsa, client_ca=pki.ca) as (_, port):
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca), "-tls-client-cert", str(cert), "-tls-client-key", str(key)),
                   port, cause)


def test_credential_files_are_checked_before_connecting(probe, pki, tmp_path):
    def setup_error(*args):
        r = probe("-addr", "localhost:1", "-tls", *args)
        assert r.code == 1, r
        assert len(r.lines) == 1, r
        return r.lines[0]

    missing = tmp_path / "missing.pem"
    assert setup_error("-tls-ca-cert", str(missing)) == (
        f"failed to initialize tls credentials. error=failed to load root CA certificates from file ({missing}) "
        f"error=open {missing}: no such file or directory")
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    assert setup_error("-tls-ca-cert", str(empty)) == f"failed to initialize tls credentials. error=no root CA certs parsed from file {empty}"
    cert, _ = pki.client_rsa_pkcs8
    _, other_key = pki.client_ec_sec1
    assert setup_error("-tls-client-cert", str(cert), "-tls-client-key", str(other_key)) == (
        "failed to initialize tls credentials. error=failed to load tls client cert/key pair. "
        "error=tls: private key does not match public key")
    assert setup_error("-tls-client-cert", str(missing), "-tls-client-key", str(other_key)) == (
        "failed to initialize tls credentials. error=failed to load tls client cert/key pair. "
        f"error=open {missing}: no such file or directory")


def test_spiffe_without_workload_api_exits_20(probe):
    r = probe("-addr", "localhost:1", "-spiffe")
    assert r.code == 20
    assert r.lines[0].startswith("failed to initialize tls credentials with spiffe. error=")


def test_sni_is_the_host_name_never_an_ip_and_no_alpn_is_accepted(probe, pki):
    with raw_peer("serving", tls=pki.server_other_name) as (proc, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca), "-tls-server-name", "api.other.example")
        assert (r.code, r.lines) == (0, ["status: SERVING"]), "a server selecting no ALPN protocol is accepted"
        assert read_line(proc, "SNI ") == "SNI api.other.example"
        r = check(probe, port, "-tls-no-verify", host="127.0.0.1")
        assert r.code == 0, r
        assert read_line(proc, "SNI ") == "SNI -", "no SNI for an IP address"
    with raw_peer("serving", tls=pki.server_rsa) as (proc, port):
        assert check(probe, port, "-tls-ca-cert", str(pki.ca), "-v").code == 0
        assert read_line(proc, "SNI ") == "SNI localhost"
