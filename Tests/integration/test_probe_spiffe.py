"""-spiffe: mTLS credentials from a SPIFFE Workload API (a grpcio agent on a unix socket), against
grpcio and grpc-go servers that require client certificates of the trust domain. Failures of the
Workload API exit 20; of the server's SVID, 2; each at once where it can be known at once."""
import os
import signal
import subprocess
import time

import pytest

from conftest import assert_one_line_failure, read_line, server
from peers import workload_api

KINDS = ["python", "go"]
SPIFFE_FAILURE = "failed to initialize tls credentials with spiffe. error="


def spiffe_server(kind, pair, pki):
    cert, key = pair
    return server(kind, tls_cert=cert, tls_key=key, tls_client_ca=pki.spiffe_ca)


def check(probe, port, endpoint, *args, host="localhost"):
    env = dict(os.environ, SPIFFE_ENDPOINT_SOCKET=endpoint) if endpoint is not None else \
        {k: v for k, v in os.environ.items() if k != "SPIFFE_ENDPOINT_SOCKET"}
    return probe("-addr", f"{host}:{port}", "-spiffe", "-connect-timeout", "5s", "-rpc-timeout", "5s", *args, env=env)


@pytest.mark.parametrize("kind", KINDS)
def test_spiffe_mtls_serving(probe, pki, tmp_path, kind):
    with workload_api(pki, tmp_path) as (proc, endpoint), spiffe_server(kind, pki.spiffe_server, pki) as (_, port):
        r = check(probe, port, endpoint, "-v")
        assert r.code == 0, r
        assert 'SPIFFE Verifiable Identity Document (SVID): "spiffe://example.org/probe"' in r.lines
        assert r.lines[-1] == "status: SERVING"
        assert read_line(proc, "CALL ") == "CALL true", "the Workload API's security header is sent"
        # Host names are not checked: the server is known by its SPIFFE ID.
        assert check(probe, port, endpoint, host="127.0.0.1").code == 0


def test_workload_api_over_tcp(probe, pki, tmp_path):
    with workload_api(pki, tmp_path, tcp=True) as (_, endpoint), spiffe_server("go", pki.spiffe_server, pki) as (_, port):
        assert endpoint.startswith("tcp://127.0.0.1:")
        r = check(probe, port, endpoint)
        assert (r.code, r.lines) == (0, ["status: SERVING"])


def test_a_signal_cancels_the_wait_for_the_workload_api(bindir, pki, tmp_path):
    with workload_api(pki, tmp_path, mode="stall") as (proc, endpoint):
        env = dict(os.environ, SPIFFE_ENDPOINT_SOCKET=endpoint)
        start = time.monotonic()
        probe = subprocess.Popen([str(bindir / "grpc_health_probe"), "-addr", "localhost:1", "-spiffe", "-rpc-timeout", "20s"],
                                 stderr=subprocess.PIPE, text=True, env=env)
        assert read_line(proc, "CALL ") == "CALL true"  # the probe is waiting for the answer
        probe.send_signal(signal.SIGTERM)
        _, stderr = probe.communicate(timeout=10)
        assert probe.returncode == 20
        assert stderr.splitlines() == ["cancellation received (signal: terminated)", SPIFFE_FAILURE + "context canceled"]
        assert time.monotonic() - start < 5


def test_spiffe_federated_trust_domain(probe, pki, tmp_path):
    with spiffe_server("go", pki.spiffe_other_server, pki) as (_, port):
        with workload_api(pki, tmp_path) as (_, endpoint):
            assert_one_line_failure(check(probe, port, endpoint), 2, f'error: failed to connect service at "localhost:{port}": ',
                                    'x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain "other.org"')
        with workload_api(pki, tmp_path, federated=[("spiffe://other.org", pki.spiffe_other_ca)]) as (_, endpoint):
            r = check(probe, port, endpoint)
            assert (r.code, r.lines) == (0, ["status: SERVING"])


@pytest.mark.parametrize("leaf,cause", [
    ("spiffe_two_ids_server", "x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN"),
    ("spiffe_ca_leaf_server", "x509svid: leaf certificate must not be a CA or have keyCertSign or cRLSign key usage"),
])
def test_a_server_svid_must_have_one_id_and_not_be_a_ca(probe, pki, tmp_path, leaf, cause):
    with workload_api(pki, tmp_path) as (_, endpoint), spiffe_server("go", getattr(pki, leaf), pki) as (_, port):
        assert_one_line_failure(check(probe, port, endpoint), 2, f'error: failed to connect service at "localhost:{port}": ',
                                "tls: failed to verify certificate: " + cause)


@pytest.mark.parametrize("kind", KINDS)
def test_server_without_a_spiffe_id_is_refused(probe, pki, tmp_path, kind):
    with workload_api(pki, tmp_path) as (_, endpoint), spiffe_server(kind, pki.spiffe_no_id_server, pki) as (_, port):
        assert_one_line_failure(check(probe, port, endpoint), 2, f'error: failed to connect service at "localhost:{port}": ',
                                "tls: failed to verify certificate: x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN")


def test_a_trusted_ca_cannot_vouch_for_another_trust_domain(probe, pki, tmp_path):
    """other.org's CA, trusted for other.org, signs a certificate claiming spiffe://example.org:
    it is checked against example.org's bundle, which does not know that CA."""
    with workload_api(pki, tmp_path, federated=[("other.org", pki.spiffe_other_ca)]) as (_, endpoint), \
            spiffe_server("go", pki.spiffe_impostor_server, pki) as (_, port):
        assert_one_line_failure(check(probe, port, endpoint), 2, f'error: failed to connect service at "localhost:{port}": ',
                                "tls: failed to verify certificate: x509svid: could not verify leaf certificate: x509: certificate "
                                'signed by unknown authority (roots: the bundle of trust domain "example.org")')


def test_workload_api_not_configured_or_absent(probe, tmp_path):
    assert_one_line_failure(check(probe, 1, None), 20, SPIFFE_FAILURE, "workload endpoint socket address is not configured")
    assert_one_line_failure(check(probe, 1, "/no/scheme"), 20, SPIFFE_FAILURE, 'must have a "tcp" or "unix" scheme')
    missing = tmp_path / "missing.sock"
    assert_one_line_failure(check(probe, 1, f"unix://{missing}"), 20, SPIFFE_FAILURE,
                            f"workload API at unix://{missing}: dial unix {missing}: connect: no such file or directory")


def test_every_svids_bundle_is_trusted(probe, pki, tmp_path):
    """Two SVIDs, example.org's then other.org's, no federated bundles: the probe presents the
    first, and trusts the bundle of each, as go-spiffe's source does, so a server of other.org
    is verified against other.org's roots."""
    other = ("spiffe://other.org/probe", pki.spiffe_other_probe, pki.spiffe_other_ca)
    with workload_api(pki, tmp_path, extra_svids=[other]) as (_, endpoint), spiffe_server("go", pki.spiffe_other_server, pki) as (_, port):
        r = check(probe, port, endpoint, "-v")
        assert r.code == 0, r
        assert 'SPIFFE Verifiable Identity Document (SVID): "spiffe://example.org/probe"' in r.lines


def test_a_large_federation_is_trusted(probe, pki, tmp_path):
    """No limit on how many trust domains: 100 federated bundles, the server's among the last."""
    federated = [(f"spiffe://member{i}.example", pki.spiffe_ca) for i in range(99)] + [("spiffe://other.org", pki.spiffe_other_ca)]
    with workload_api(pki, tmp_path, federated=federated) as (_, endpoint), spiffe_server("go", pki.spiffe_other_server, pki) as (_, port):
        r = check(probe, port, endpoint)
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_a_response_without_svids_is_skipped_for_the_next(probe, pki, tmp_path):
    """An agent that has not attested the workload yet may first answer with no SVIDs; as
    go-spiffe, the probe waits for the next response within -rpc-timeout."""
    with workload_api(pki, tmp_path, mode="empty-first") as (_, endpoint), spiffe_server("go", pki.spiffe_server, pki) as (_, port):
        r = check(probe, port, endpoint)
        assert (r.code, r.lines) == (0, ["status: SERVING"]), r


def test_only_responses_without_svids_end_at_the_deadline_or_the_stream(probe, pki, tmp_path):
    with workload_api(pki, tmp_path, mode="empty") as (_, endpoint):
        r = probe("-addr", "localhost:1", "-spiffe", "-rpc-timeout", "300ms", env=dict(os.environ, SPIFFE_ENDPOINT_SOCKET=endpoint))
        assert (r.code, r.lines) == (20, [SPIFFE_FAILURE + "context deadline exceeded (no SVIDs in the Workload API's response)"]), r
        assert 0.3 <= r.elapsed < 1.3, r
    with workload_api(pki, tmp_path, mode="empty-end") as (_, endpoint):
        assert_one_line_failure(check(probe, 1, endpoint), 20, SPIFFE_FAILURE, "no SVIDs in the Workload API's response")


@pytest.mark.parametrize("mode,cause", [
    ("deny", "rpc error: code = PermissionDenied desc = no identity issued"),
])
def test_workload_api_refusals_are_reported_at_once(probe, pki, tmp_path, mode, cause):
    with workload_api(pki, tmp_path, mode=mode) as (_, endpoint):
        assert_one_line_failure(check(probe, 1, endpoint), 20, SPIFFE_FAILURE, cause)


def test_a_stalled_workload_api_ends_at_the_rpc_timeout(probe, pki, tmp_path):
    with workload_api(pki, tmp_path, mode="stall") as (_, endpoint):
        env = dict(os.environ, SPIFFE_ENDPOINT_SOCKET=endpoint)
        r = probe("-addr", "localhost:1", "-spiffe", "-rpc-timeout", "300ms", env=env)
        assert r.code == 20, r
        assert r.lines == [SPIFFE_FAILURE + "context deadline exceeded"], r
        assert 0.3 <= r.elapsed < 1.3, r
