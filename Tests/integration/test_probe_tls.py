"""-tls against grpcio and grpc-go servers with certificates made at test time. Every failure
must come back at once (well before the 5 s connect timeout), exit 2, naming its cause."""
import fcntl
import os
import pty
import re
import select
import shutil
import subprocess
import termios
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import BIN, PEERS, LineReader, assert_one_line_failure, raw_peer, read_line, running, server

KINDS = ["python", "go"]
FAST = 1.0  # seconds: "at once", against a 5 s connect timeout


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
@pytest.mark.parametrize("leaf", ["p384_sha384", "ed25519", "rsa_pss_sha512"])
def test_other_key_types_and_signature_algorithms(probe, pki, kind, leaf):
    with tls_server(kind, getattr(pki, "server_" + leaf)) as (_, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca))
        assert (r.code, r.lines) == (0, ["status: SERVING"])


# TLS 1.2, one suite at a time: AEADs, CBC with HMAC, and RSA key exchange; -v names the suite.
TLS12_SUITES = [
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ecdsa", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "rsa", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ecdsa", "ECDHE-ECDSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "rsa", "ECDHE-RSA-AES256-SHA"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "rsa", "AES128-GCM-SHA256"),
]


@pytest.mark.parametrize("suite,leaf,openssl_name", TLS12_SUITES)
def test_tls12_cipher_suites(probe, pki, suite, leaf, openssl_name):
    with tls_server("go", getattr(pki, "server_" + leaf), tls_max_version="1.2", tls_ciphers=suite) as (_, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca), "-v")
        assert r.code == 0, r
        assert f"tls: TLSv1.2 {openssl_name}, ALPN h2, server certificate verified" in r.lines
        assert r.lines[-1] == "status: SERVING"


@contextmanager
def openssl_server(pair, *args, chain=None):
    """OpenSSL's own test server (`openssl s_server`) with exactly the protocol, suites or groups
    in `args`: it completes a handshake only with what it was given, then waits for an HTTP/1
    request, so the probe's -v line names what was negotiated and its connect phase then times
    out. Yields the port."""
    cert, key = pair
    proc = subprocess.Popen(["openssl", "s_server", "-accept", "0", "-cert", str(cert), "-key", str(key), "-alpn", "h2", "-www",
                             *(["-cert_chain", str(chain)] if chain else []), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = LineReader(proc).until("ACCEPT", time.monotonic() + 10)
        yield line.rsplit(":", 1)[1]
    finally:
        proc.kill()
        proc.wait(timeout=10)


# What TLS speaks beyond what the grpc-go servers offer by default; each case is a server that
# accepts nothing else.
NEGOTIATED = [
    ("ecdsa", ["-tls1_3", "-groups", "X448"], "TLSv1.3 TLS_AES_256_GCM_SHA384"),
    ("ecdsa", ["-tls1_3", "-groups", "P-521"], "TLSv1.3 TLS_AES_256_GCM_SHA384"),
    ("ecdsa", ["-tls1_3", "-groups", "ffdhe2048"], "TLSv1.3 TLS_AES_256_GCM_SHA384"),
    ("ecdsa", ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"], "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256"),
    ("ecdsa", ["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"], "TLSv1.3 TLS_AES_128_GCM_SHA256"),
    ("ecdsa", ["-tls1_2", "-groups", "P-384", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"], "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("ecdsa", ["-tls1_2", "-groups", "X448", "-cipher", "ECDHE-ECDSA-AES128-SHA256"], "TLSv1.2 ECDHE-ECDSA-AES128-SHA256"),
    ("rsa", ["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"], "TLSv1.2 DHE-RSA-AES128-GCM-SHA256"),
    ("rsa", ["-tls1_2", "-cipher", "DHE-RSA-CHACHA20-POLY1305"], "TLSv1.2 DHE-RSA-CHACHA20-POLY1305"),
    ("rsa", ["-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA384"], "TLSv1.2 ECDHE-RSA-AES256-SHA384"),
]


@pytest.mark.parametrize("leaf,args,negotiated", NEGOTIATED, ids=[" ".join(n[1]) for n in NEGOTIATED])
def test_the_algorithms_tls_speaks(probe, pki, leaf, args, negotiated):
    chain = pki.dir / "intermediate.pem" if leaf == "ecdsa" else None  # the ECDSA leaf's issuer is the intermediate
    with openssl_server(getattr(pki, "server_" + leaf), *args, chain=chain) as port:
        r = probe("-addr", f"localhost:{port}", "-tls", "-tls-ca-cert", str(pki.ca), "-v", "-connect-timeout", "300ms")
        assert f"tls: {negotiated}, ALPN h2, server certificate verified" in r.lines, r


@pytest.mark.parametrize("args", [["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM"], ["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"],
                                  ["-tls1_2", "-sigalgs", "ECDSA+SHA1", "-cipher", "ECDHE-ECDSA-AES128-SHA"]],
                         ids=["AES-CCM (1.2)", "AES-CCM (1.3)", "SHA-1 handshake signatures"])
def test_what_tls_does_not_speak_is_refused_at_once(probe, pki, args):
    """As Go's TLS client: no AES-CCM, no SHA-1 signatures in the handshake."""
    with openssl_server(pki.server_ecdsa, *args, chain=pki.dir / "intermediate.pem") as port:
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port, "remote error: tls: handshake failure")


def test_a_sha1_signed_certificate_is_refused(probe, pki):
    """As Go refuses it (since 1.18): a SHA-1 signature in the chain is too weak to trust."""
    with tls_server("go", pki.server_rsa_sha1) as (_, port):
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port,
                   "tls: failed to verify certificate: x509: CA signature digest algorithm too weak")


@pytest.mark.parametrize("client", ["rsa_pkcs1", "ec_sec1", "ed25519"])
def test_tls12_mutual_tls(probe, pki, client):
    cert, key = getattr(pki, "client_" + client)
    with tls_server("go", pki.server_ecdsa, client_ca=pki.ca, tls_max_version="1.2") as (_, port):
        r = check(probe, port, "-tls-ca-cert", str(pki.ca), "-tls-client-cert", str(cert), "-tls-client-key", str(key))
        assert (r.code, r.lines) == (0, ["status: SERVING"])


@pytest.mark.parametrize("kind", KINDS)
def test_system_roots_from_ssl_cert_file(probe, pki, kind):
    with tls_server(kind, pki.server_ecdsa) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE=str(pki.ca), SSL_CERT_DIR="/nonexistent")
        assert check(probe, port, env=env).lines == ["status: SERVING"]
        # Without it, the system roots do not know the test CA.
        fails_fast(check(probe, port), port, "x509: certificate signed by unknown authority")


def system_bundle():
    """Debian's CA bundle (ca-certificates, which the test command installs): ~140 real roots."""
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    assert system.exists(), f"{system} is missing: the test command installs ca-certificates"
    text = system.read_text()
    assert text.count("BEGIN CERTIFICATE") > 50, "a system-sized bundle"
    return text


def test_roots_are_found_among_many(probe, pki, tmp_path):
    """A system-sized bundle with the test CA in it, and a server that sends only its leaf: the
    intermediate and the root are both looked up by subject in the bundle."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(system_bundle() + (pki.dir / "intermediate.pem").read_text() + pki.ca.read_text())
    with tls_server("go", pki.server_ecdsa_leaf_only) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR="/nonexistent")
        assert check(probe, port, env=env).lines == ["status: SERVING"]
        assert check(probe, port, "-tls-ca-cert", str(bundle)).lines == ["status: SERVING"]
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port, "x509: certificate signed by unknown authority")


def test_bundle_index_reads_long_subjects_and_crlf(probe, pki, tmp_path):
    """The bundle index finds a root whose subject ends deep in its certificate, in a bundle with
    CRLF line endings and text between the blocks."""
    # asn1parse lists TBSCertificate's fields at depth 2: version, serial, signature, issuer,
    # validity, subject; "off:d=2 hl=H l=L" gives where the subject ends.
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(pki.long_name_root)], capture_output=True, text=True,
                            check=True, timeout=30).stdout
    fields = re.findall(r"(\d+):d=2\s+hl=(\d+)\s+l=\s*(\d+)", parsed)
    assert sum(map(int, fields[5])) > 512
    bundle = tmp_path / "bundle.pem"
    text = "a comment line\n" + pki.ca.read_text() + "# Long name root\n" + pki.long_name_root.read_text()
    bundle.write_bytes(text.replace("\n", "\r\n").encode())
    with tls_server("go", pki.server_under_long_name_root) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR="/nonexistent")
        assert check(probe, port, env=env).lines == ["status: SERVING"]
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port, "x509: certificate signed by unknown authority")


@pytest.mark.parametrize("rehashed", [True, False])
def test_roots_from_every_file_of_ssl_cert_dir(probe, pki, tmp_path, rehashed):
    """As Go: every file of the directories is read, whether or not `openssl rehash` ran."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "test-root.pem").write_text(pki.ca.read_text())
    (certs / "not-a-certificate.txt").write_text("some text\n")
    (certs / "subdirectory").mkdir()
    if rehashed:
        subprocess.run(["openssl", "rehash", str(certs)], check=True, capture_output=True, timeout=30)
    with tls_server("python", pki.server_rsa) as (_, port):
        env = dict(os.environ, SSL_CERT_FILE="/nonexistent", SSL_CERT_DIR=f"/nonexistent:{certs}")
        assert check(probe, port, env=env).lines == ["status: SERVING"]
        env["SSL_CERT_DIR"] = "/nonexistent"
        fails_fast(check(probe, port, env=env), port, "(trusted roots: no system roots (none found; set SSL_CERT_FILE")


def no_ssl_environment():
    return {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}


def probe_in_scratch_image(root, port, env):
    """The shipped binary alone in `root` (with its /etc), as a scratch image with certificates."""
    (root / "proc").mkdir(parents=True, exist_ok=True)
    shutil.copy(BIN, root / "grpc-init")
    start = time.monotonic()
    out = subprocess.run(["unshare", "--mount", "--pid", "--fork", f"--root={root}", "--mount-proc=/proc",
                          "/grpc-init", "grpc_health_probe", "-addr", f"localhost:{port}", "-tls", "-connect-timeout", "5s"],
                         capture_output=True, text=True, timeout=30, env=env)
    return out.returncode, out.stderr, time.monotonic() - start


def kubernetes_volume(directory, files):
    """The layout kubelet gives a ConfigMap or Secret volume: each name a link into ..data."""
    stamp = directory / "..2026_11_25_00_00_00.000000000"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
        (directory / name).symlink_to(f"..data/{name}")
    (directory / "..data").symlink_to(stamp.name)


@pytest.mark.parametrize("layout", ["copied file", "kubernetes volume", "beside a managed bundle", "alpine bundle, empty SSL_CERT_FILE"])
def test_roots_in_a_scratch_image(pki, tmp_path, layout):
    """Where images put a private CA, with no environment to point at it."""
    root = tmp_path / "root"
    certs = root / "etc" / "ssl" / "certs"
    certs.mkdir(parents=True)
    env = no_ssl_environment()
    if layout == "copied file":  # COPY ca.pem /etc/ssl/certs/
        (certs / "private-ca.pem").write_text(pki.ca.read_text())
    elif layout == "kubernetes volume":  # a ConfigMap mounted at /etc/ssl/certs
        kubernetes_volume(certs, {"private-ca.pem": pki.ca.read_text()})
    elif layout == "beside a managed bundle":  # update-ca-certificates' bundle, and a file copied later
        (certs / "ca-certificates.crt").write_text(system_bundle())
        (certs / "private-ca.pem").write_text(pki.ca.read_text())
    else:  # Alpine's bundle location; an empty variable counts as unset, as in Go
        (root / "etc" / "ssl" / "cert.pem").write_text(pki.ca.read_text())
        env["SSL_CERT_FILE"] = ""
    with tls_server("go", pki.server_ecdsa) as (_, port):
        code, stderr, _ = probe_in_scratch_image(root, port, env)
        assert (code, stderr) == (0, "status: SERVING\n")
    # Without the private CA, the same image does not trust the server, and says so at once.
    for path in sorted(root.rglob("*private-ca.pem"), reverse=True) + [root / "etc" / "ssl" / "cert.pem"]:
        if path.is_symlink() or path.exists():
            path.unlink()
    with tls_server("go", pki.server_ecdsa) as (_, port):
        code, stderr, elapsed = probe_in_scratch_image(root, port, env)
        assert code == 2 and "x509: certificate signed by unknown authority" in stderr, stderr
        assert elapsed < FAST + 1.0  # unshare's own start included


def test_the_first_readable_bundle_is_the_one(pki, tmp_path):
    """Go's order of bundle files: the first one that can be read is used, the later ones not
    (openSUSE's comes before Alpine's); SSL_CERT_FILE replaces them all."""
    root = tmp_path / "root"
    (root / "etc" / "ssl").mkdir(parents=True)
    suse, alpine = root / "etc" / "ssl" / "ca-bundle.pem", root / "etc" / "ssl" / "cert.pem"
    alpine.write_text(pki.ca.read_text())
    suse.write_text((pki.dir / "other-root.pem").read_text())
    env = no_ssl_environment()
    with tls_server("go", pki.server_ecdsa) as (_, port):
        code, stderr, _ = probe_in_scratch_image(root, port, env)
        assert code == 2 and "x509: certificate signed by unknown authority" in stderr, stderr
        code, stderr, _ = probe_in_scratch_image(root, port, dict(env, SSL_CERT_FILE="/etc/ssl/cert.pem"))
        assert (code, stderr) == (0, "status: SERVING\n")
        suse.unlink()
        code, stderr, _ = probe_in_scratch_image(root, port, env)
        assert (code, stderr) == (0, "status: SERVING\n")


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
        # Go's words for a name against a certificate with IP SANs only.
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port,
                   "x509: certificate is not valid for any names, but wanted to match localhost")


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
    """Both servers close on a plaintext preface without answering (the preface is no TLS
    record, and not the HTTP/1 request that Go's TLS server answers in plaintext)."""
    with tls_server(kind, pki.server_rsa) as (_, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-connect-timeout", "5s")
        assert r.code == 2 and r.elapsed < FAST, r
        assert r.lines == [f'error: failed to connect service at "127.0.0.1:{port}": server at 127.0.0.1:{port} closed the connection '
                           "before the HTTP/2 handshake (error reading from server: EOF); a TLS server does this to plaintext "
                           "clients (try -tls)"], r


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
    assert setup_error("-tls-ca-cert", str(tmp_path)) == (
        f"failed to initialize tls credentials. error=failed to load root CA certificates from file ({tmp_path}) "
        f"error=read {tmp_path}: is a directory")
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
    assert setup_error("-tls-client-cert", str(cert), "-tls-client-key", str(tmp_path)) == (
        "failed to initialize tls credentials. error=failed to load tls client cert/key pair. "
        f"error=read {tmp_path}: is a directory")


def run_on_a_terminal(argv, timeout=10):
    """Runs argv as a session leader whose controlling terminal is a new pty (what an operator's
    shell gives): returns (exit code, everything written to the terminal)."""
    main, secondary = pty.openpty()

    def take_terminal():
        os.setsid()
        fcntl.ioctl(secondary, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=secondary, stdout=secondary, stderr=secondary, preexec_fn=take_terminal)
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: every holder of the terminal's other end closed it
                break
            if not chunk:
                break
            output += chunk
        return proc.wait(timeout=max(0.1, deadline - time.monotonic())), output.decode(errors="replace")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        os.close(main)


def test_unreadable_client_keys(probe, pki, tmp_path, bindir):
    cert, key = pki.client_ec_sec1
    prefix = "failed to initialize tls credentials. error=failed to load tls client cert/key pair. error="
    junk = tmp_path / "junk.key"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(key), "-out", str(encrypted), "-passout", "pass:secret"],
                   check=True, capture_output=True, timeout=60)
    cases = [(cert, cert, "tls: found a certificate rather than a key in the PEM for the private key"),
             (key, key, "tls: failed to find certificate PEM data in certificate input, but did find a private key; "
                        "PEM inputs may have been switched"),
             (cert, junk, "tls: failed to parse private key"),
             (cert, encrypted, "tls: failed to parse private key")]  # Go's words for an encrypted key too
    for bad_cert, bad_key, cause in cases:
        r = probe("-addr", "localhost:1", "-tls", "-tls-client-cert", str(bad_cert), "-tls-client-key", str(bad_key))
        assert (r.code, r.lines) == (1, [prefix + cause]), r
    # A terminal must not get a passphrase prompt: the probe never waits for input.
    code, output = run_on_a_terminal([str(bindir / "grpc_health_probe"), "-addr", "localhost:1", "-tls",
                                      "-tls-client-cert", str(cert), "-tls-client-key", str(encrypted)])
    assert code == 1, output
    assert "pass phrase" not in output and "tls: failed to parse private key" in output, output


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


@pytest.fixture(scope="session")
def alpn_peer_binary(tmp_path_factory):
    """The C peer that selects an ALPN protocol the client did not offer, built with Debian's
    libssl-dev."""
    out = tmp_path_factory.mktemp("alpnpeer") / "alpnpeer"
    subprocess.run(["cc", "-O2", "-o", str(out), str(PEERS / "alpnpeer" / "alpnpeer.c"), "-lssl", "-lcrypto"],
                   check=True, capture_output=True, timeout=120)
    return out


def test_a_server_selecting_another_alpn_protocol_is_refused(probe, pki, alpn_peer_binary):
    cert, key = pki.server_ecdsa
    with running([str(alpn_peer_binary), str(cert), str(key), "http/1.1"]) as (_, address):
        port = address.rsplit(":", 1)[1]
        fails_fast(check(probe, port, "-tls-ca-cert", str(pki.ca)), port,
                   "tls: server selected unadvertised ALPN protocol (offered: h2)")


def test_a_malformed_server_handshake_is_named(probe):
    """A failure with no message of its own is given OpenSSL's reason text and where it arose."""
    with raw_peer("malformed-server-hello") as port:
        fails_fast(check(probe, port, "-tls-no-verify"), port,
                   "tls: length mismatch (OpenSSL error a00009f in tls_process_server_hello)")


def reached(bindir, functions, args, env=None):
    """Whether a probe with `args` runs any of `functions`: breakpoints on them under gdb."""
    breaks = [a for f in functions for a in ("-ex", f"break {f}")]
    out = subprocess.run(["gdb", "-q", "-batch", *breaks, "-ex", "run", "-ex", "info breakpoints",
                          "--args", str(bindir / "grpc_health_probe"), *args], capture_output=True, text=True, timeout=60, env=env)
    assert "Breakpoint 1 at" in out.stdout, out.stdout + out.stderr
    return "breakpoint already hit" in out.stdout


def openssl_initialised(bindir, args, env=None):
    return reached(bindir, ["OPENSSL_init_crypto", "OPENSSL_init_ssl"], args, env)


def test_the_tls_only_provider_is_the_one_in_use(bindir, pki):
    """The shipped binary fetches its algorithms through grpc-init's provider: its query function
    runs (it would not, were OpenSSL's default provider in its place)."""
    with tls_server("go", pki.server_ecdsa) as (_, port):
        assert reached(bindir, ["tls_provider_query"], ["-addr", f"localhost:{port}", "-tls", "-tls-ca-cert", str(pki.ca)])


def test_openssl_is_initialised_only_with_tls(bindir, pki):
    with tls_server("go", pki.server_ecdsa) as (_, tls_port), server("go") as (_, port):
        assert not openssl_initialised(bindir, ["-addr", f"127.0.0.1:{port}"])
        assert not openssl_initialised(bindir, ["-addr", "127.0.0.1:1"])
        assert openssl_initialised(bindir, ["-addr", f"localhost:{tls_port}", "-tls", "-tls-ca-cert", str(pki.ca)])


def test_openssl_cnf_is_never_read(probe, pki, tmp_path):
    """OPENSSL_CONF names a FIFO nobody writes: reading it would block the probe until killed."""
    fifo = tmp_path / "openssl.cnf"
    os.mkfifo(fifo)
    env = dict(os.environ, OPENSSL_CONF=str(fifo))
    with tls_server("go", pki.server_ecdsa) as (_, port):
        for args in (["-tls-ca-cert", str(pki.ca)], []):
            system_env = dict(env, SSL_CERT_FILE=str(pki.ca)) if not args else env
            r = check(probe, port, *args, env=system_env)
            assert (r.code, r.lines) == (0, ["status: SERVING"]), r
