"""The shipped Kubernetes examples and Dockerfiles work as written: each manifest passes
kubernetes-validate, each probe answers SERVING against a live server of its kind (with its
paths, ports and socket mapped to the test's): an exec probe run as kubelet runs it, a native
httpGet or grpc probe sent to grpc-init's health port (the server under grpc-init with the
manifest's environment), the supervisor settings in the environment behave as their comments
say, and the Dockerfiles pass hadolint."""
import http.client
import os
import subprocess
import time
from contextlib import contextmanager

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import GO_SERVER, ROOT, LineReader, server
from peers import free_port, workload_api

K8S = ROOT / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
VENV = ROOT / ".venv" / "bin"


def container(manifest):
    deployment = yaml.safe_load(manifest.read_text())
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
    assert mounts <= {v["name"] for v in pod.get("volumes", [])}, "every mounted volume is declared"
    return pod["containers"][0]


def test_there_are_examples_for_plaintext_tls_and_spiffe():
    assert [m.name for m in MANIFESTS] == ["deployment-spiffe.yaml", "deployment-tls.yaml", "deployment.yaml", "job-restart-rules.yaml"]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_manifest_is_valid_kubernetes(manifest):
    out = subprocess.run([str(VENV / "kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.release", "Dockerfile.from-release"])
def test_dockerfile_passes_hadolint(dockerfile):
    out = subprocess.run([str(VENV / "hadolint"), str(ROOT / "docker" / dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@contextmanager
def live_server(manifest, pki, tmp_path):
    """A server of the manifest's kind; yields its port, the file paths the manifest's probes
    name mapped to the test's, and the environment the probe gets."""
    name = manifest.name
    if name == "deployment.yaml":
        with server("go", services="greeter.Greeter=SERVING") as (_, port):
            yield port, {}, {}
    elif name == "deployment-tls.yaml":
        client_cert, client_key = pki.client_ec_sec1
        paths = {"/etc/probe-tls/ca.crt": str(pki.ca), "/etc/probe-tls/tls.crt": str(client_cert),
                 "/etc/probe-tls/tls.key": str(client_key)}
        with server("go", tls_cert=pki.server_ecdsa[0], tls_key=pki.server_ecdsa[1], tls_client_ca=pki.ca) as (_, port):
            yield port, paths, {}
    else:
        with workload_api(pki, tmp_path) as (_, endpoint), server("go", tls_cert=pki.spiffe_server[0], tls_key=pki.spiffe_server[1],
                                                            tls_client_ca=pki.spiffe_ca) as (_, port):
            yield port, {}, {"SPIFFE_ENDPOINT_SOCKET": endpoint}


def native(bindir, spec, pki, probes):
    """The manifest's native probes against grpc-init's health port, the server of its kind as
    grpc-init's child, with the manifest's environment (paths and port mapped)."""
    name_paths = {"/etc/probe-tls/ca.crt": str(pki.ca), "/etc/probe-tls/tls.crt": str(pki.client_ec_sec1[0]),
                  "/etc/probe-tls/tls.key": str(pki.client_ec_sec1[1])}
    health = free_port()
    env = dict(os.environ)
    for e in spec.get("env", []):
        value = name_paths.get(e["value"], e["value"])
        env[e["name"]] = f"127.0.0.1:{health}" if e["name"] == "GRPC_INIT_HEALTH_ADDR" else value
    assert "GRPC_INIT_HEALTH_ADDR" in {e["name"] for e in spec["env"]}
    manifest_health_port = int(next(e["value"] for e in spec["env"] if e["name"] == "GRPC_INIT_HEALTH_ADDR").rsplit(":", 1)[1])
    command = [str(GO_SERVER), "-addr", "127.0.0.1:0", "-services", "greeter.Greeter=SERVING"]
    if "GRPC_INIT_READY_TLS" in env:
        command += ["-tls-cert", str(pki.server_ecdsa[0]), "-tls-key", str(pki.server_ecdsa[1]), "-tls-client-ca", str(pki.ca)]
    ports = {p.get("name"): p["containerPort"] for p in spec["ports"]}
    proc = subprocess.Popen([str(bindir / "grpc-init"), "--", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        LineReader(proc, proc.stderr).until("[grpc-init] ready: ", time.monotonic() + 20)
        for probe in probes:
            p = spec[probe]
            if "httpGet" in p:
                port = p["httpGet"]["port"]
                # The probe's port (a name or a number) is the one the manifest's grpc-init listens on.
                assert ports.get(port, port) == manifest_health_port, (probe, port, manifest_health_port)
                conn = http.client.HTTPConnection("127.0.0.1", health, timeout=5)
                conn.request("GET", p["httpGet"]["path"])
                r = conn.getresponse()
                assert (r.status, r.read()) == (200, b"SERVING\n"), (probe, p)
                conn.close()
            else:
                assert p["grpc"]["port"] == 8086, p
                with grpc.insecure_channel(f"127.0.0.1:{health}") as channel:
                    answer = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=p["grpc"].get("service", "")), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, (probe, p)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_manifest_probes_answer_serving(bindir, pki, tmp_path, manifest):
    spec = container(manifest)
    port = spec["ports"][0]["containerPort"]
    declared = {e["name"]: e["value"] for e in spec.get("env", [])}
    probes = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in spec]
    assert "startupProbe" in probes and "readinessProbe" in probes, probes
    native_probes = [p for p in probes if "exec" not in spec[p]]
    if native_probes:
        native(bindir, spec, pki, native_probes)
    exec_probes = [p for p in probes if "exec" in spec[p]]
    if not exec_probes:
        return
    with live_server(manifest, pki, tmp_path) as (live, paths, env):
        if "SPIFFE_ENDPOINT_SOCKET" in env:
            assert declared["SPIFFE_ENDPOINT_SOCKET"].startswith("unix:///spiffe-workload-api/")
        for probe in exec_probes:
            command = spec[probe]["exec"]["command"]
            assert command[0] == "/bin/grpc_health_probe", command
            args = [arg.replace(f"localhost:{port}", f"localhost:{live}") for arg in command[1:]]
            for path, mapped in paths.items():
                args = [arg.replace(path, mapped) for arg in args]
            assert any(f"localhost:{live}" in arg for arg in args), command
            out = subprocess.run([str(bindir / "grpc_health_probe"), *args], capture_output=True, text=True, timeout=10,
                                 env=dict(os.environ, **env))
            assert (out.returncode, out.stderr) == (0, "status: SERVING\n"), (probe, out)


def test_the_native_and_the_exec_paths_are_both_shown():
    kinds = {m.name: {next(iter(set(container(m)[p]) & {"exec", "httpGet", "grpc"})) for p in ("startupProbe", "readinessProbe")
                      if p in container(m)} for m in MANIFESTS}
    assert kinds["deployment.yaml"] <= {"httpGet", "grpc"} and kinds["deployment-tls.yaml"] <= {"httpGet", "grpc"}, kinds
    assert kinds["deployment-spiffe.yaml"] == {"exec"}, kinds


def test_manifest_environment_makes_a_sigterm_shutdown_a_success(bindir):
    env = dict(os.environ, **{e["name"]: e["value"] for e in container(K8S / "deployment.yaml")["env"]})
    env["GRPC_INIT_HEALTH_ADDR"] = f"127.0.0.1:{free_port()}"  # loopback only, here
    clean = subprocess.run([str(bindir / "grpc-init"), "--", "sh", "-c", "kill -TERM $$"], env=env,
                           capture_output=True, text=True, timeout=10)
    assert (clean.returncode, clean.stderr) == (0, ""), clean
    failed = subprocess.run([str(bindir / "grpc-init"), "--", "sh", "-c", "exit 3"], env=env,
                            capture_output=True, text=True, timeout=10)
    assert failed.returncode == 3, failed


def seconds(duration):
    """A Go duration of the forms the manifests use (1s, 500ms, 2m) in seconds."""
    for unit, scale in (("ms", 0.001), ("s", 1), ("m", 60)):
        if duration.endswith(unit) and duration[:-len(unit)].replace(".", "", 1).isdigit():
            return float(duration[:-len(unit)]) * scale
    raise ValueError(duration)


def own_bound(probe):
    """The longest a probe of grpc-init's can take by its own timeouts, in seconds."""
    if "exec" in probe:
        flags = dict(a.lstrip("-").split("=", 1) for a in probe["exec"]["command"][1:] if "=" in a)
        connect, rpc = seconds(flags.get("connect-timeout", "1s")), seconds(flags.get("rpc-timeout", "1s"))
        # -spiffe fetches the SVID within -rpc-timeout before connecting.
        return connect + rpc + (rpc if "-spiffe" in probe["exec"]["command"] else 0)
    if "httpGet" in probe:
        query = dict(p.split("=", 1) for p in probe["httpGet"]["path"].partition("?")[2].split("&") if "=" in p)
        return seconds(query.get("timeout", "1s"))  # the endpoint's default answer deadline
    return 0.0  # a native gRPC probe sends kubelet's own deadline


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_every_probe_ends_by_its_own_timeout_before_kubelets(manifest):
    """A probe killed by kubelet's timeoutSeconds says nothing: its own timeouts must come first."""
    c = container(manifest)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in c:
            probe = c[kind]
            assert own_bound(probe) < probe.get("timeoutSeconds", 1), (manifest.name, kind, own_bound(probe))
