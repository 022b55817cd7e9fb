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
    found = {l.split()[1]: (int(l.split()[2]), l.split(None, 3)[3] if len(l.split()) > 3 else "") for l in lines if l.startswith("RESULT ")}
    queries = next(l for l in lines if l.startswith("QUERIES")).split()[1:]
    return found, queries


def test_search_list_with_ndots(results):
    found, queries = results
    assert found["svc"] == (0, "status: SERVING")
    # ndots:2 and one dot in "svc": the search domains come first, in order.
    assert queries.index("svc.other.test./1") < queries.index("svc.prod.test./1")


def test_cname_and_ipv6_answers(results):
    found, _ = results
    assert found["alias"] == (0, "status: SERVING")
    assert found["v6only"] == (0, "status: SERVING")


def test_names_with_enough_dots_are_tried_as_given_first(results):
    found, queries = results
    assert found["svc.prod.test"] == (0, "status: SERVING")
    assert "svc.prod.test.other.test./1" not in queries


def test_unknown_name_fails_at_once_with_its_cause(results):
    found, _ = results
    code, message = found["missing"]
    assert code == 2
    assert message.startswith('error: failed to connect service at "missing:')
    assert message.endswith('": lookup missing: no such host')


def test_every_address_is_tried_in_order(results):
    found, queries = results
    assert found["multi"] == (0, "status: SERVING")
