"""The shipped Kubernetes example works as written: its exec probes against a live server, and the
supervisor settings in its environment."""
import os
import subprocess

import yaml

from conftest import ROOT, server

MANIFEST = ROOT / "k8s" / "deployment.yaml"


def container():
    deployment = yaml.safe_load(MANIFEST.read_text())
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
    assert mounts <= {v["name"] for v in pod.get("volumes", [])}, "every mounted volume is declared"
    return pod["containers"][0]


def test_manifest_probes_answer_serving(bindir):
    spec = container()
    port = spec["ports"][0]["containerPort"]
    with server("go", services="greeter.Greeter=SERVING") as (_, live):
        for probe in ("readinessProbe", "livenessProbe"):
            command = spec[probe]["exec"]["command"]
            assert command[0] == "/bin/grpc_health_probe", command
            args = [arg.replace(f"localhost:{port}", f"localhost:{live}") for arg in command[1:]]
            assert any(f"localhost:{live}" in arg for arg in args), command
            out = subprocess.run([str(bindir / "grpc_health_probe"), *args], capture_output=True, text=True, timeout=10)
            assert (out.returncode, out.stderr) == (0, "status: SERVING\n"), (probe, out)


def test_manifest_environment_makes_a_sigterm_shutdown_a_success(bindir):
    env = dict(os.environ, **{e["name"]: e["value"] for e in container()["env"]})
    clean = subprocess.run([str(bindir / "grpc-init"), "--", "sh", "-c", "kill -TERM $$"], env=env,
                           capture_output=True, text=True, timeout=10)
    assert (clean.returncode, clean.stderr) == (0, ""), clean
    failed = subprocess.run([str(bindir / "grpc-init"), "--", "sh", "-c", "exit 3"], env=env,
                            capture_output=True, text=True, timeout=10)
    assert failed.returncode == 3, failed
