"""Names resolved through DNS as /etc/resolv.conf says (search list, ndots), by a static binary
without glibc's NSS: a fake DNS server and the server under test in a private network namespace."""
import subprocess
import sys

import pytest

from conftest import GO_SERVER, PEERS


@pytest.fixture(scope="module")
def results(bindir):
    out = subprocess.run(["unshare", "--net", "--mount", sys.executable, str(PEERS / "dns_scenario.py"),
                          str(bindir / "grpc_health_probe"), str(GO_SERVER)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    found, elapsed = {}, {}
    for line in lines:
        if line.startswith("RESULT "):
            fields = line.split(None, 4)
            found[fields[1]] = (int(fields[2]), fields[4] if len(fields) > 4 else "")
            elapsed[fields[1]] = float(fields[3])
    queries = next(l for l in lines if l.startswith("QUERIES")).split()[1:]
    connects = next(l for l in lines if l.startswith("CONNECTS")).split()[1:]
    return found, queries, elapsed, connects


def test_search_list_with_ndots(results):
    found, queries, _, _ = results
    assert found["svc"] == (0, "status: SERVING")
    # ndots:2 and one dot in "svc": the search domains come first, in order.
    assert queries.index("svc.other.test./1") < queries.index("svc.prod.test./1")


def test_cname_and_ipv6_answers(results):
    found, _, _, _ = results
    assert found["alias"] == (0, "status: SERVING")
    assert found["v6only"] == (0, "status: SERVING")


def test_names_with_enough_dots_are_tried_as_given_first(results):
    found, queries, _, _ = results
    assert found["svc.prod.test"] == (0, "status: SERVING")
    assert "svc.prod.test.other.test./1" not in queries


def test_unknown_name_fails_at_once_with_its_cause(results):
    """NXDOMAIN for every name of the search list ends the probe at once, not at -connect-timeout (3s)."""
    found, queries, elapsed, _ = results
    code, message = found["missing"]
    assert code == 2
    assert message.startswith('error: failed to connect service at "missing:')
    assert message.endswith('": lookup missing: no such host')
    assert elapsed["missing"] < 0.5, elapsed
    assert {"missing.other.test./1", "missing.prod.test./1", "missing./1"} <= set(queries), queries


def test_every_address_is_tried_in_order(results):
    """The name has an A record (127.0.0.2, which refuses) and an AAAA record (::1, the server):
    the probe connects to each in turn, and the refusal does not end it."""
    found, _, _, connects = results
    assert found["multi"] == (0, "status: SERVING")
    assert connects == ["127.0.0.2", "::1"], connects
