"""Probe mode's command line: the reference tool's flags, checks, messages and exit codes."""
import os
import subprocess

import pytest


def test_no_addr(probe):
    r = probe()
    assert (r.code, r.lines) == (1, ["error: -addr not specified"])


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_help_prints_usage_and_exits_1(probe, flag):
    r = probe(flag)
    assert r.code == 1
    assert r.lines[0] == "Usage:"
    assert "  -addr string" in r.lines
    assert "  -connect-timeout duration" in r.lines
    assert any(l.strip() == "timeout for establishing connection (default 1s)" for l in r.lines)
    assert any('(default "grpc_health_probe")' in l for l in r.lines)


@pytest.mark.parametrize("args,message", [
    (["-nosuchflag"], "flag provided but not defined: -nosuchflag"),
    (["-addr", "x:1", "-connect-timeout", "abc"], 'invalid value "abc" for flag -connect-timeout: parse error'),
    (["-addr", "x:1", "-rpc-timeout=1"], 'invalid value "1" for flag -rpc-timeout: parse error'),
    (["-tls=maybe"], 'invalid boolean value "maybe" for -tls: parse error'),
    (["-rpc-header", "x-token"], "invalid value \"x-token\" for flag -rpc-header: invalid RPC header, expected 'key: value', got \"x-token\""),
    (["-addr"], "flag needs an argument: -addr"),
])
def test_bad_flags_print_go_message_then_usage(probe, args, message):
    r = probe(*args)
    assert r.code == 1
    assert r.lines[0] == message
    assert r.lines[1] == "Usage:"


@pytest.mark.parametrize("args,message", [
    (["-connect-timeout", "0"], "error: -connect-timeout must be greater than zero (specified: 0s)"),
    (["-connect-timeout", "-1s"], "error: -connect-timeout must be greater than zero (specified: -1s)"),
    (["-rpc-timeout", "0s"], "error: -rpc-timeout must be greater than zero (specified: 0s)"),
    (["-tls-no-verify"], "error: specified -tls-no-verify without specifying -tls"),
    (["-tls-ca-cert", "ca.pem"], "error: specified -tls-ca-cert without specifying -tls"),
    (["-tls-client-cert", "c.pem"], "error: specified -tls-client-cert without specifying -tls"),
    (["-tls-server-name", "x"], "error: specified -tls-server-name without specifying -tls"),
    (["-tls", "-tls-client-cert", "c.pem"], "error: specified -tls-client-cert without specifying -tls-client-key"),
    (["-tls", "-tls-client-key", "k.pem"], "error: specified -tls-client-key without specifying -tls-client-cert"),
    (["-tls", "-tls-no-verify", "-tls-ca-cert", "ca.pem"], "error: cannot specify -tls-ca-cert with -tls-no-verify (CA cert would not be used)"),
    (["-tls", "-tls-no-verify", "-tls-server-name", "x"], "error: cannot specify -tls-server-name with -tls-no-verify (server name would not be used)"),
    (["-alts", "-spiffe"], "error: -alts and -spiffe are mutually incompatible"),
    (["-tls", "-alts"], "error: cannot specify -tls with -alts"),
    (["-tls", "-spiffe"], "-tls and -spiffe are mutually incompatible"),
])
def test_argument_checks(probe, args, message):
    r = probe("-addr", "localhost:1", *args)
    assert (r.code, r.lines) == (1, [message])


def test_alts_is_refused_clearly(probe):
    r = probe("-addr", "localhost:1", "-alts")
    assert r.code == 1
    assert r.lines[0].startswith("error: -alts is not supported")


def test_version(probe, bindir):
    import subprocess
    r = probe("-version")
    assert r.code == 0 and r.stdout.startswith("grpc_health_probe (grpc-init) ")
    out = subprocess.run([str(bindir / "grpc-init"), "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("grpc-init ")


def test_busybox_style_invocation(bindir):
    import subprocess
    out = subprocess.run([str(bindir / "grpc-init"), "grpc_health_probe"], capture_output=True, text=True, timeout=10)
    assert (out.returncode, out.stderr) == (1, "error: -addr not specified\n")


def test_missing_port_is_a_connection_error(probe):
    r = probe("-addr", "localhost")
    assert r.code == 2
    assert r.lines == ['error: failed to connect service at "localhost": address localhost: missing port in address']


def test_a_closed_stderr_does_not_change_the_exit_code(bindir):
    """The probe's exit code is its answer: a stderr nobody reads must not kill it with SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = subprocess.run([str(bindir / "grpc_health_probe"), "-addr", "127.0.0.1:1"], stderr=write_end, timeout=10)
    os.close(write_end)
    assert out.returncode == 2
