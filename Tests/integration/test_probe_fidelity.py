"""The drop-in, exact: where a differential run against the Go tool found ours different, the
Go behaviour (grpc-go, Go's crypto/x509, net and flag packages), each against a real Go or
grpcio peer, or the raw peer where only a raw one can do it."""
import subprocess

import pytest

import time

from conftest import collect_lines, raw_peer, server
from test_probe_tls import fails_fast, tls_server

RPC = "error: health rpc failed: rpc error: code = "


def headers_seen(proc):
    lines = collect_lines(proc, "", lambda ls: any(l.startswith("SERVICE") for l in ls))
    return [l[len("HEADER "):] for l in lines if l.startswith("HEADER ")]


def test_a_refused_stream_is_sent_again_once(probe):
    """1. REFUSED_STREAM: the server did not process the call; grpc-go retries it transparently."""
    with raw_peer("refused-once") as port:
        r = probe("-addr", f"127.0.0.1:{port}")
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r
    with raw_peer("refused-twice") as port:
        r = probe("-addr", f"127.0.0.1:{port}")
        assert r.code == 3 and r.lines == [RPC + "Unavailable desc = stream terminated by RST_STREAM with error code: REFUSED_STREAM"], r


def test_the_servers_header_list_limit_is_honoured(probe):
    """2. grpcio advertises SETTINGS_MAX_HEADER_LIST_SIZE 16 KiB: a larger list fails the call
    before it is sent, as grpc-go fails it."""
    with server("python") as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "x-big: " + "a" * 17000)
        assert (r.code, r.lines) == (3, [RPC + "Internal desc = header list size to send violates the maximum size (16384 bytes) set by server"]), r
        # Over the 4 KiB sent before the SETTINGS, under grpcio's own soft limit of 8 KiB.
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "x-big: " + "a" * 6000)
        assert r.code == 0, "under the limit, sent once the limit is known"


def test_the_tls_server_name_is_the_authority(probe, pki):
    """3. grpc-go sends -tls-server-name as :authority."""
    with tls_server("go", pki.server_rsa, echo_headers=True) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-tls", "-tls-ca-cert", str(pki.ca), "-tls-server-name", "localhost")
        assert r.code == 0, r
        assert ":authority=localhost" in headers_seen(proc)


def test_an_empty_user_agent_is_followed_by_the_space_all_the_same(probe):
    """4. grpc-go's WithUserAgent appends " " and its token to whatever it is given, "" too."""
    with server("go", echo_headers=True) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-user-agent=")
        assert r.code == 0, r
        agents = [h for h in headers_seen(proc) if h.startswith("user-agent=")]
        assert len(agents) == 1 and agents[0].startswith("user-agent= grpc-init/"), agents


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_name_only_in_the_common_name_is_refused(probe, pki, host):
    """5 and 8. Go ignores the Common Name; it says so, not "valid for X, not X"."""
    pair = pki.server_cn_only if host == "localhost" else pki.server_cn_ip_only
    with tls_server("go", pair) as (proc, port):
        r = probe("-addr", f"{host}:{port}", "-tls", "-tls-ca-cert", str(pki.ca))
        fails_fast(r, port, "x509: certificate relies on legacy Common Name field, use SANs instead", host=host)


@pytest.mark.parametrize("anchor", ["intermediate", "leaf"])
def test_any_certificate_of_the_ca_file_is_an_anchor(probe, pki, anchor):
    """6. Go trusts any certificate in its roots: an intermediate, or the leaf itself."""
    ca = pki.intermediate if anchor == "intermediate" else pki.server_ecdsa_leaf_only[0]
    with tls_server("go", pki.server_ecdsa) as (proc, port):
        r = probe("-addr", f"localhost:{port}", "-tls", "-tls-ca-cert", str(ca))
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_a_trailing_dot_is_not_sent_in_sni(probe, pki):
    """7. Go strips the dot from SNI (RFC 6066) and matches the name without it."""
    with raw_peer("serving", tls=pki.server_rsa) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-tls", "-tls-ca-cert", str(pki.ca), "-tls-server-name", "localhost.")
        assert proc.lines.until("SNI ", time.monotonic() + 5) == "SNI localhost"
    with tls_server("go", pki.server_rsa) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-tls", "-tls-ca-cert", str(pki.ca), "-tls-server-name", "localhost.")
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_an_ipv4_mapped_address_matches_its_ipv4_san(probe, pki):
    """8. Go compares IP values: ::ffff:127.0.0.1 is 127.0.0.1."""
    with tls_server("go", pki.server_ip_only, listen="[::]:0") as (proc, port):
        r = probe("-addr", f"[::ffff:127.0.0.1]:{port}", "-tls", "-tls-ca-cert", str(pki.ca))
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_pem_files_are_read_as_gos_pem_decoder_reads_them(probe, pki, tmp_path):
    """9. Indented PEM lines are no PEM to Go; a truncated certificate is no PEM data; an
    encrypted key is a key that does not parse."""
    indented = tmp_path / "indented.pem"
    indented.write_text("".join("  " + line + "\n" for line in pki.ca.read_text().splitlines()))
    r = probe("-addr", "localhost:1", "-tls", "-tls-ca-cert", str(indented))
    assert (r.code, r.lines) == (1, [f"failed to initialize tls credentials. error=no root CA certs parsed from file {indented}"]), r
    cert, key = pki.client_rsa_pkcs8
    truncated = tmp_path / "truncated.pem"
    truncated.write_text("".join(cert.read_text().splitlines(keepends=True)[:5]))
    r = probe("-addr", "localhost:1", "-tls", "-tls-client-cert", str(truncated), "-tls-client-key", str(key))
    assert r.lines == ["failed to initialize tls credentials. error=failed to load tls client cert/key pair. "
                       "error=tls: failed to find any PEM data in certificate input"], r
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(key), "-out", str(encrypted), "-passout", "pass:x"], check=True, timeout=30)
    r = probe("-addr", "localhost:1", "-tls", "-tls-client-cert", str(cert), "-tls-client-key", str(encrypted))
    assert r.lines == ["failed to initialize tls credentials. error=failed to load tls client cert/key pair. "
                       "error=tls: failed to parse private key"], r


@pytest.mark.parametrize("form", ["passthrough:///127.0.0.1:{port}", "dns://127.0.0.1:53/127.0.0.1:{port}", "127.0.0.1:+{port}",
                                  "[::]:{port}", "passthrough:127.0.0.1:{port}"])
def test_address_forms_grpc_go_accepts(probe, form):
    """10. What grpc-go's passthrough and dns resolvers and Go's dialer take (the DNS resolver
    is not asked for an IP endpoint; no packet leaves this host)."""
    with server("go") as (proc, port):
        r = probe("-addr", form.format(port=port))
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_an_abstract_socket_as_go_spells_it(probe):
    with server("go", listen="unix:@grpc-init-fidelity") as (proc, where):
        r = probe("-addr", "unix:@grpc-init-fidelity")
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_help_is_the_reference_tools_own(probe):
    """13. -h prints what the Go tool's flag set prints: Go's defaults, nothing of ours."""
    r = probe("-h")
    assert r.code == 1
    assert r.lines[0] == "Usage:"
    assert "  -addr string\n    \t(required) tcp host:port to connect\n" in r.stderr
    assert "  -alts\n    \tuse ALTS (default: false, INSECURE plaintext transport)\n" in r.stderr
    assert "Exit codes" not in r.stderr and "unix" not in r.stderr


def test_verbose_says_establishing_connection_before_the_address_fails(probe):
    """14. The line comes first, as the Go tool prints it before dialing."""
    r = probe("-addr", "no-port-here", "-v")
    assert r.code == 2
    assert r.lines[-2] == "establishing connection"
    assert r.lines[-1].startswith('error: failed to connect service at "no-port-here": ')


def test_arguments_are_bytes_as_go_keeps_them(probe):
    """11. A service name that is not UTF-8 is not re-encoded: grpc-go cannot marshal it. A
    user-agent that is not UTF-8 reaches the server as its bytes."""
    with server("go", echo_headers=True) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", b"-service=ok\xc3")
        assert (r.code, r.lines) == (3, [RPC + "Internal desc = grpc: error while marshaling: string field contains invalid UTF-8"]), r
        r = probe("-addr", f"127.0.0.1:{port}", b"-user-agent=\xff")
        assert r.code == 0, r
        agents = [h for h in headers_seen(proc) if h.startswith("user-agent=")]
        assert agents[0].startswith("user-agent=\udcff grpc-init/"), agents


def test_strings_compare_and_trim_as_bytes(probe):
    """12. Go compares bytes, trims runes and lower-cases each rune (Swift's String would compare
    by canonical equivalence, trim grapheme clusters and lower-case İ to two scalars)."""
    with server("go", echo_headers=True) as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header=k: \u0301b")
        assert (r.code, r.lines) == (3, [RPC + 'Internal desc = header key "k" contains value with non-printable ASCII characters']), r
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header=\u0130:b")
        assert r.code == 0, r
        assert "i=b" in headers_seen(proc)
        r = probe("-addr", f"127.0.0.1:{port}", "-v", "-rpc-header=\u00e9:1", "-rpc-header=e\u0301:2")
        assert "> headers: {map[e\u0301:[2] \u00e9:[1]]}" in r.lines, r


USAGE = """Usage:
  -addr string
    \t(required) tcp host:port to connect
  -alts
    \tuse ALTS (default: false, INSECURE plaintext transport)
  -connect-timeout duration
    \ttimeout for establishing connection (default 1s)
  -gzip
    \tuse GZIPCompressor for requests and GZIPDecompressor for response (default: false)
  -rpc-header value
    \tadditional RPC headers in 'name: value' format. May specify more than one via multiple flags.
  -rpc-timeout duration
    \ttimeout for health check rpc (default 1s)
  -service string
    \tservice name to check (default: "")
  -spiffe
    \tuse SPIFFE to obtain mTLS credentials
  -tls
    \tuse TLS (default: false, INSECURE plaintext transport)
  -tls-ca-cert string
    \t(with -tls, optional) file containing trusted certificates for verifying server
  -tls-client-cert string
    \t(with -tls, optional) client certificate for authenticating to the server (requires -tls-client-key)
  -tls-client-key string
    \t(with -tls) client private key for authenticating to the server (requires -tls-client-cert)
  -tls-no-verify
    \t(with -tls) don't verify the certificate (INSECURE) presented by the server (default: false)
  -tls-server-name string
    \t(with -tls) override the hostname used to verify the server certificate
  -user-agent string
    \tuser-agent header value of health check requests (default "grpc_health_probe")
  -v\tverbose logs
  -version
    \tshow probe version and exit
"""


def test_the_usage_is_the_releases_line_for_line(probe):
    """15. Go's PrintDefaults of the release's flags, and nothing after the last one; after a bad
    flag, the same under Go's message."""
    r = probe("-h")
    assert (r.code, r.stdout, r.stderr) == (1, "", USAGE), r
    r = probe("-nosuchflag")
    assert (r.code, r.stderr) == (1, "flag provided but not defined: -nosuchflag\n" + USAGE), r


def test_a_scheme_without_slashes_is_a_target_grpc_go_resolves(probe):
    """16. passthrough:HOST:PORT is a URL whose opaque part is the endpoint; so is dns:HOST:PORT."""
    with server("go", echo_headers=True) as (proc, port):
        for form in (f"passthrough:127.0.0.1:{port}", f"dns:127.0.0.1:{port}"):
            r = probe("-addr", form)
            assert (r.code, r.lines) == (0, ["status: SERVING"]), (form, r)
            assert f":authority=127.0.0.1:{port}" in headers_seen(proc)


def test_a_percent_that_starts_no_escape_is_refused_as_grpc_go_refuses_it(probe):
    """17. grpc-go reads the address as passthrough:///ADDRESS with Go's url package, which
    refuses a % not followed by two hex digits (an IPv6 zone must be written %25)."""
    with server("go") as (proc, port):
        r = probe("-addr", f"[::1%1]:{port}")
        assert (r.code, r.lines) == (2, [f'error: failed to connect service at "[::1%1]:{port}": '
                                         f'parse "passthrough:///[::1%1]:{port}": invalid URL escape "%1]"']), r
        r = probe("-addr", f"127.0.0.1:{port}%")
        assert (r.code, r.lines) == (2, [f'error: failed to connect service at "127.0.0.1:{port}%": '
                                         f'parse "passthrough:///127.0.0.1:{port}%": invalid URL escape "%"']), r
        # A valid escape is decoded: the port is read from %XX.
        r = probe("-addr", "127.0.0.1:" + "".join(f"%{ord(c):02X}" for c in str(port)))
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


@pytest.mark.parametrize("form,authority", [("[127.0.0.1]:{port}", "[127.0.0.1]:{port}"), ("127.0.0.1:+{port}", "127.0.0.1:+{port}")])
def test_the_authority_is_the_endpoint_as_written(probe, form, authority):
    """18. grpc-go sends the endpoint of the target as :authority, brackets and sign included."""
    with server("go", echo_headers=True) as (proc, port):
        r = probe("-addr", form.format(port=port))
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r
        assert ":authority=" + authority.format(port=port) in headers_seen(proc)


def test_every_header_is_checked_the_reserved_ones_too(probe):
    """19. grpc-go checks all the metadata it holds before it leaves content-type and the other
    names of its own out, and reports the first bad name in the order the names first came
    (most of the time: its map walk starts at a random slot; ours always does)."""
    with server("go") as (proc, port):
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "content-type: b\x01")
        assert (r.code, r.lines) == (3, [RPC + 'Internal desc = header key "content-type" contains value with non-printable ASCII characters']), r
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "te: x\x7f")
        assert (r.code, r.lines) == (3, [RPC + 'Internal desc = header key "te" contains value with non-printable ASCII characters']), r
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "user-agent: \x01", "-rpc-header", ": v")
        assert (r.code, r.lines) == (3, [RPC + 'Internal desc = header key "user-agent" contains value with non-printable ASCII characters']), r
        r = probe("-addr", f"127.0.0.1:{port}", "-rpc-header", "content-type: application/grpc")
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_verbose_prints_header_values_as_bytes(bindir):
    """20. Go's log writes the flag's value bytes as they are; not U+FFFD for what is not UTF-8."""
    out = subprocess.run([str(bindir / "grpc_health_probe"), "-v", "-addr", "127.0.0.1:1", b"-rpc-header=k: a\xffb",
                          b"-rpc-header=K: \xc3"], capture_output=True, timeout=15)
    assert b"> headers: {map[k:[a\xffb \xc3]]}\n" in out.stderr, out.stderr
