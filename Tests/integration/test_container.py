"""The image a user ships, under a real container runtime: podman builds docker/Dockerfile.release
(the static grpc-go test server as the application) and runs it as a user would. Containers use
the host's network and loopback addresses only. The settings a machine needs (runtime, cgroup
manager, storage driver, rlimits) are found by trying them, not assumed."""
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time

import pytest

from conftest import GO_SERVER, ROOT
from peers import free_port

IMAGE = "localhost/grpc-init-test:latest"
# Tried in order; the first that starts a container is used.
RUNTIMES = [[], ["--runtime", "runc", "--cgroup-manager", "cgroupfs"], ["--cgroup-manager", "cgroupfs"]]
STORAGE = [[], ["--storage-driver", "vfs"]]
# podman raises the containers' rlimits by default, which a VM without CAP_SYS_RESOURCE refuses.
LIMITS = [[], ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]]


class Podman:
    def __init__(self, base, run_flags):
        self.base = base
        self.run_flags = run_flags

    def __call__(self, *args, timeout=60, check=True, env=None):
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
        return out

    def run(self, name, *args, env=(), image_args=(), podman_env=None):
        """`podman run -d` of the test image as container `name`, on the host's network; `env`
        is the container's, `podman_env` podman's own."""
        flags = ["run", "-d", "--name", name, "--network", "host", *self.run_flags]
        for key, value in dict(env).items():
            flags += ["-e", f"{key}={value}"]
        return self(*flags, *args, IMAGE, *image_args, env=podman_env)

    def logs(self, name):
        out = self("logs", name)
        return out.stdout + out.stderr

    def await_log(self, name, text, timeout=20):
        deadline = time.monotonic() + timeout
        while text not in (logs := self.logs(name)):
            assert time.monotonic() < deadline, f"no {text!r} in the logs of {name}: {logs}"
            time.sleep(0.05)  # podman logs cannot be followed with a deadline; bounded polling
        return logs

    def exit_code(self, name):
        return json.loads(self("inspect", name).stdout)[0]["State"]["ExitCode"]


def first_error_line(out):
    return (out.stderr.strip() or out.stdout.strip() or f"exit {out.returncode}").splitlines()[-1]


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """podman with its own storage for this run, the settings that work here, and the image."""
    assert shutil.which("podman"), "podman is missing: the test command installs it"
    store = tmp_path_factory.mktemp("podman")
    context = store / "context"
    subprocess.run([str(ROOT / "scripts" / "image-context.sh"), str(context), str(GO_SERVER)], check=True, timeout=60)
    last = None
    for storage in STORAGE:
        base = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), *storage]
        built = subprocess.run([*base, "build", "-q", "-f", str(ROOT / "docker" / "Dockerfile.release"), "-t", IMAGE, str(context)],
                               capture_output=True, text=True, timeout=300)
        if built.returncode != 0:
            last = built
            continue
        for runtime in RUNTIMES:
            for limits in LIMITS:
                tried = subprocess.run([*base, *runtime, "run", "--rm", "--network", "host", *limits, "--entrypoint", "/grpc-init",
                                        IMAGE, "-version"], capture_output=True, text=True, timeout=120)
                if tried.returncode == 0 and tried.stdout.startswith("grpc-init "):
                    tool = Podman([*base, *runtime], limits)
                    yield tool
                    tool("rm", "-a", "-f", check=False)
                    return
                last = tried
    pytest.fail(f"podman cannot start a container here: {first_error_line(last)}")


def server_args(port, *extra):
    return ["/server", "-addr", f"127.0.0.1:{port}", *extra]


@pytest.fixture
def names(podman, request):
    """Container names for this test, removed afterwards."""
    made = []

    def name(suffix=""):
        made.append(f"{request.node.name[:40].strip('_')}{suffix}".replace("[", "-").replace("]", "").lower())
        return made[-1]
    yield name
    for n in made:
        podman("rm", "-f", n, check=False)


def test_pid1_gates_and_supervises(podman, names):
    """ENTRYPOINT ["/grpc-init", "--"] and nothing else: the gate finds the server's port."""
    port, c = free_port(), names()
    podman.run(c, image_args=server_args(port, "-serving-after", "300ms"))
    logs = podman.await_log(c, "[grpc-init] ready: ")
    assert f"[grpc-init] health: found the gRPC server at 127.0.0.1:{port} (pid " in logs
    assert f"[grpc-init] ready: 127.0.0.1:{port} reports SERVING" in logs
    host_pid = json.loads(podman("inspect", c).stdout)[0]["State"]["Pid"]
    status = dict(line.split(":\t", 1) for line in open(f"/proc/{host_pid}/status").read().splitlines() if ":\t" in line)
    assert status["Name"] == "grpc-init" and status["NSpid"].split()[-1] == "1", status


def test_exec_probe_as_kubelet_runs_it(podman, names):
    port, c = free_port(), names()
    podman.run(c, image_args=server_args(port, "-services", "down=NOT_SERVING"))
    deadline = time.monotonic() + 20
    while (r := podman("exec", c, "/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}", check=False)).returncode == 2:
        assert time.monotonic() < deadline, r.stderr
        time.sleep(0.05)
    assert (r.returncode, r.stderr) == (0, "status: SERVING\n")
    r = podman("exec", c, "/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}", "-service=down", check=False)
    assert (r.returncode, r.stderr) == (4, 'service unhealthy (responded with "NOT_SERVING")\n')
    r = podman("exec", c, "/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}", "-service=nope", check=False)
    assert (r.returncode, r.stderr) == (3, "error: health rpc failed: rpc error: code = NotFound desc = unknown service\n")


@pytest.mark.parametrize("remap", [False, True], ids=["143", "remapped to 0"])
def test_podman_stop_passes_sigterm_on(podman, names, remap):
    port, c = free_port(), names()
    podman.run(c, env={"GRPC_INIT_REMAP_EXIT": "143"} if remap else {}, image_args=server_args(port))
    podman.await_log(c, "READY ")
    start = time.monotonic()
    podman("stop", c)
    assert time.monotonic() - start < 5, "the server stopped on the forwarded SIGTERM, not at the stop timeout"
    assert podman.exit_code(c) == (0 if remap else 143)


def test_podman_stop_kills_a_server_that_ignores_sigterm(podman, names):
    port, c = free_port(), names()
    podman.run(c, image_args=server_args(port, "-ignore-sigterm"))
    podman.await_log(c, "READY ")
    start = time.monotonic()
    podman("stop", "-t", "2", c)
    elapsed = time.monotonic() - start
    assert 2 <= elapsed < 8, elapsed
    assert podman.exit_code(c) == 137


def test_podman_kill_signal_is_forwarded(podman, names):
    port, c = free_port(), names()
    podman.run(c, image_args=server_args(port, "-report-signals"))
    podman.await_log(c, "READY ")
    podman("kill", "-s", "SIGUSR1", c)
    podman.await_log(c, "SIGNAL user defined signal 1")


def test_sdnotify_container_reports_ready_once_serving(podman, names, tmp_path):
    """--sdnotify=container: podman passes the container's notifications to its own
    NOTIFY_SOCKET (a systemd unit's); READY=1 comes from the gate once the server serves."""
    notify = tmp_path / "notify.sock"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(notify))
    port, c = free_port(), names()
    try:
        podman.run(c, "--sdnotify=container", image_args=server_args(port, "-serving-after", "500ms"), podman_env=dict(os.environ, NOTIFY_SOCKET=str(notify)))
        messages, deadline = [], time.monotonic() + 60
        while "READY=1" not in messages:
            manager.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                messages += manager.recv(4096).decode().splitlines()
            except socket.timeout:
                pytest.fail(f"no READY=1 from the container within 60 s; it said {messages}")
        logs = podman.logs(c)
        assert "SERVING NOW " in logs, "READY=1 came only after the server serves"
    finally:
        manager.close()


def test_read_only_root_and_an_unprivileged_user(podman, names):
    port, c = free_port(), names()
    podman.run(c, "--read-only", "--user", "65532:65532", env={"GRPC_INIT_READY_ADDR": f"localhost:{port}"},
               image_args=server_args(port))
    podman.await_log(c, "[grpc-init] ready: ")
    r = podman("exec", c, "/bin/grpc_health_probe", f"-addr=localhost:{port}", check=False)
    assert (r.returncode, r.stderr) == (0, "status: SERVING\n")


def test_podman_healthcheck_runs_the_probe(podman, names):
    """podman's own healthcheck with the probe symlink: healthy, and unhealthy for a service the
    server does not know."""
    for name, service in ((names(), ""), (names("-unknown"), "nope")):
        port = free_port()
        command = json.dumps(["/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}", f"-service={service}"])
        podman.run(name, "--health-cmd", command, "--health-interval", "disable", "--health-retries", "1",
                   image_args=server_args(port))
        podman.await_log(name, "READY ")
        healthy = service == ""
        assert podman("healthcheck", "run", name, check=False).returncode == (0 if healthy else 1)
        assert json.loads(podman("inspect", name).stdout)[0]["State"]["Health"]["Status"] == ("healthy" if healthy else "unhealthy")


def test_native_probes_from_the_host_reach_the_health_port(podman, names):
    """kubelet's httpGet and grpc probes, sent from the host over loopback to the health port,
    then `podman stop` with a drain: 503 draining at once, the server's SIGTERM a second later."""
    import http.client

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port, health, c = free_port(), free_port(), names()
    podman.run(c, env={"GRPC_INIT_HEALTH_ADDR": f"127.0.0.1:{health}", "GRPC_INIT_DRAIN_DELAY": "1s"},
               image_args=server_args(port, "-services", "down=NOT_SERVING"))
    podman.await_log(c, "[grpc-init] ready: ")

    def get(path):
        conn = http.client.HTTPConnection("127.0.0.1", health, timeout=5)
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()

    assert get("/readyz") == (200, "SERVING\n")
    assert get("/readyz?service=down") == (503, "NOT_SERVING\n")
    assert get("/livez") == (200, "SERVING\n")
    with grpc.insecure_channel(f"127.0.0.1:{health}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    stop = subprocess.Popen([*podman.base, "stop", "-t", "10", c], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        deadline = start + 5
        while get("/readyz") != (503, "draining\n"):
            assert time.monotonic() < deadline
            time.sleep(0.02)  # podman delivering the SIGTERM, which nothing here can await; bounded
        stop.wait(timeout=20)
    finally:
        if stop.poll() is None:
            stop.kill()
    assert time.monotonic() - start >= 1.0, "the server got SIGTERM only after the drain"
    assert podman.exit_code(c) == 143


def test_two_servers_in_the_containers_tree_are_both_waited_for(podman, names):
    """The server spawns a second one as its child (a main port and an admin port, two
    processes): /readyz names each; not ready while the main one is NOT_SERVING, ready once
    SIGUSR2 (from `podman kill`, forwarded by grpc-init) turns it SERVING."""
    from test_every_server import await_readyz, line_of

    main, admin, health, c = free_port(), free_port(), free_port(), names()
    podman.run(c, env={"GRPC_INIT_HEALTH_ADDR": f"127.0.0.1:{health}"},
               image_args=server_args(main, "-status", "NOT_SERVING", "-serve-on-sigusr2", "-spawn", f"-addr 127.0.0.1:{admin}"))
    podman.await_log(c, f"[grpc-init] health: found the gRPC server at 127.0.0.1:{admin} (pid ")
    podman.await_log(c, f"[grpc-init] health: found the gRPC server at 127.0.0.1:{main} (pid ")
    lines = await_readyz(health, 503, lambda lines: len(lines) == 3 and "waiting" not in "".join(lines))
    assert line_of(lines, main) == f"[-]127.0.0.1:{main} NOT_SERVING", lines
    assert line_of(lines, admin) == f"[+]127.0.0.1:{admin} SERVING", lines
    assert "[grpc-init] ready: " not in podman.logs(c)
    podman("kill", "-s", "SIGUSR2", c)
    logs = podman.await_log(c, "[grpc-init] ready: ")
    assert logs.index("SET - SERVING ") < logs.index("[grpc-init] ready: "), logs
    ready = next(line for line in logs.splitlines() if line.startswith("[grpc-init] ready: "))
    assert f"127.0.0.1:{main}" in ready and f"127.0.0.1:{admin}" in ready, ready
    lines = await_readyz(health, 200)
    assert line_of(lines, main).startswith("[+]") and line_of(lines, admin).startswith("[+]"), lines


def test_every_listed_service_of_a_server_without_list(podman, names):
    """-ready-service '*' in front of grpc-go 1.33, which has no Health/List: not ready, and
    the line says why."""
    port, c = free_port(), names()
    podman.run(c, env={"GRPC_INIT_READY_SERVICE": "*", "GRPC_INIT_VERBOSE": "true"}, image_args=server_args(port))
    logs = podman.await_log(c, '[grpc-init] not ready yet: service "*": ')
    line = next(line for line in logs.splitlines() if line.startswith('[grpc-init] not ready yet: service "*": '))
    assert line == ('[grpc-init] not ready yet: service "*": rpc error: code = Unimplemented desc = '
                    "the server has no Health/List to list its services"), logs
    assert "[grpc-init] ready: " not in logs, logs


def test_every_listed_service_turns_serving_in_turn(podman, names):
    """-ready-service '*' in front of a server that lists three services NOT_SERVING (Health/List
    by hand, -list): each SIGUSR2 turns the next one SERVING; ready only after the last."""
    port, c = free_port(), names()
    podman.run(c, env={"GRPC_INIT_READY_SERVICE": "*", "GRPC_INIT_VERBOSE": "true"},
               image_args=server_args(port, "-list", "-serve-on-sigusr2", "-services", "a=NOT_SERVING,b=NOT_SERVING,c=NOT_SERVING"))
    podman.await_log(c, '[grpc-init] not ready yet: service "a": NOT_SERVING')
    for name in ["a", "b", "c"]:
        podman("kill", "-s", "SIGUSR2", c)
        logs = podman.await_log(c, f'[grpc-init] health: service "{name}" SERVING')
        if name != "c":
            assert "[grpc-init] ready: " not in logs, logs
    logs = podman.await_log(c, "[grpc-init] ready: ")
    assert logs.index('[grpc-init] health: service "c" SERVING') < logs.index("[grpc-init] ready: "), logs
    assert f"[grpc-init] ready: 127.0.0.1:{port} (every service it lists) reports SERVING, " in logs, logs


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from pki import PKI
    return PKI(tmp_path_factory.mktemp("pki"))


def await_exec_probe(podman, c, *args, timeout=20):
    """`podman exec` of the probe until the gate is past its start (exit 2: nothing found yet)."""
    deadline = time.monotonic() + timeout
    while (r := podman("exec", c, "/bin/grpc_health_probe", *args, check=False)).returncode == 2:
        assert time.monotonic() < deadline, r.stderr
        time.sleep(0.05)  # the server's start-up, seen from outside; bounded
    return r


@pytest.mark.parametrize("mtls", [False, True], ids=["tls-only", "mtls"])
def test_the_probe_with_no_flags_through_podman_exec(podman, names, pki, mtls):
    """HEALTHCHECK CMD ["/bin/grpc_health_probe"] for a TLS-only and an mTLS server: the gate's
    flags are given once, to grpc-init (none for TLS-only); the probe takes none, and sees the
    drain."""
    port, c = free_port(), names()
    cert, key = pki.server_ecdsa
    client_cert, client_key = pki.client_rsa_pkcs8
    server = server_args(port, "-tls-cert", f"/pki/{cert.name}", "-tls-key", f"/pki/{key.name}")
    env = {"GRPC_INIT_DRAIN_DELAY": "5s"}
    if mtls:
        server += ["-tls-client-ca", f"/pki/{pki.ca.name}"]
        env |= {"GRPC_INIT_READY_TLS": "true", "GRPC_INIT_READY_TLS_CA_CERT": f"/pki/{pki.ca.name}",
                "GRPC_INIT_READY_TLS_CLIENT_CERT": f"/pki/{client_cert.name}", "GRPC_INIT_READY_TLS_CLIENT_KEY": f"/pki/{client_key.name}"}
    podman.run(c, "-v", f"{pki.dir}:/pki:ro", env=env, image_args=server)
    r = await_exec_probe(podman, c)
    assert (r.returncode, r.stderr) == (0, "status: SERVING\n")
    podman("kill", "-s", "SIGTERM", c)
    podman.await_log(c, "[grpc-init] draining")
    r = podman("exec", c, "/bin/grpc_health_probe", check=False)
    assert (r.returncode, r.stderr) == (4, 'service unhealthy (responded with "NOT_SERVING")\n')


def test_the_probe_with_no_flags_and_no_agent(podman, names):
    port, c = free_port(), names()
    podman.run(c, env={"GRPC_INIT_READY": "false"}, image_args=server_args(port))
    podman.await_log(c, "READY ")
    r = podman("exec", c, "/bin/grpc_health_probe", check=False)
    assert (r.returncode, r.stderr) == (1, "error: -addr not specified\n")


def test_release_files(podman, tmp_path):
    """scripts/release.sh, twice from the same commit: byte-identical files whose checksums
    verify, named after the version the binary says, an SBOM that validates and names that version
    and the linked versions Debian reports, and an OCI image that loads under the reference kubelet
    asks for, with its labels, and runs grpc-init as PID 1."""
    runs = []
    for n in (1, 2):
        out = tmp_path / f"release{n}"
        started = time.monotonic()
        subprocess.run([str(ROOT / "scripts" / "release.sh"), str(out)], check=True, capture_output=True, timeout=600)
        print(f"release.sh run {n}: {time.monotonic() - started:.1f} s")
        runs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert runs[0] == runs[1], "two runs from one commit give the same bytes"
    first = tmp_path / "release1"
    names = sorted(runs[0])
    version = next(n for n in names if n.endswith(".spdx.json"))[len("grpc-init-"):-len(".spdx.json")]
    assert names == sorted(["checksums.txt", f"grpc-init-{version}-linux-amd64.tar.gz", f"grpc-init-{version}.spdx.json",
                            f"grpc-init-{version}.oci.tar"])
    subprocess.run(["sha256sum", "-c", "checksums.txt"], cwd=first, check=True, capture_output=True, timeout=60)
    with tarfile.open(first / f"grpc-init-{version}-linux-amd64.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        top = f"grpc-init-{version}-linux-amd64"
        assert members[f"{top}/grpc_health_probe"].issym() and members[f"{top}/grpc_health_probe"].linkname == "grpc-init"
        assert {f"{top}/LICENSE", f"{top}/README", f"{top}/licenses/openssl.txt", f"{top}/licenses/zlib.txt"} <= set(members)
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        tar.extractall(tmp_path / "unpacked", members=[members[f"{top}/grpc-init"]], filter="tar")
    said = subprocess.run([str(tmp_path / "unpacked" / top / "grpc-init"), "-version"], capture_output=True, text=True, timeout=10)
    assert said.stdout == f"grpc-init {version}\n", "the binary says the version the release is named after"
    sbom_path = first / f"grpc-init-{version}.spdx.json"
    validated = subprocess.run([str(ROOT / ".venv" / "bin" / "pyspdxtools"), "-i", str(sbom_path)], capture_output=True, text=True,
                               timeout=60)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    packages = {p["name"]: p for p in json.loads(sbom_path.read_text())["packages"]}
    for name, debian in [("openssl", "libssl-dev"), ("zlib", "zlib1g-dev"), ("glibc", "libc6-dev")]:
        wanted = subprocess.run(["dpkg-query", "-W", "-f=${Version}", debian], capture_output=True, text=True, check=True,
                                timeout=30).stdout
        assert packages[name]["versionInfo"] == wanted, name
    assert packages["grpc-init"]["versionInfo"] == version and packages["grpc-init"]["licenseDeclared"] == "Apache-2.0"
    loaded = podman("load", "-i", str(first / f"grpc-init-{version}.oci.tar"), timeout=300)
    image = loaded.stdout.strip().splitlines()[-1].split("Loaded image:")[-1].strip()
    assert image == f"docker.io/library/grpc-init:{version.replace('+', '_')}", image
    labels = json.loads(podman("image", "inspect", image).stdout)[0]["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                                         text=True, timeout=30).stdout.strip()
    assert {"org.opencontainers.image.source", "org.opencontainers.image.created", "org.opencontainers.image.title",
            "org.opencontainers.image.description"} <= set(labels)
    ran = podman("run", "--rm", "--network", "host", *podman.run_flags, "-e", "GRPC_INIT_READY=false", image, "/bin/grpc_health_probe", "-version")
    assert ran.stdout.startswith("grpc_health_probe (grpc-init) "), ran
    # grpc-init is the container's PID 1: a probe that waits on a silent port keeps it running.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        name = "release-pid1"
        podman("run", "-d", "--name", name, "--network", "host", *podman.run_flags, "-e", "GRPC_INIT_READY=false", image,
               "/bin/grpc_health_probe", f"-addr=127.0.0.1:{silent.getsockname()[1]}", "-connect-timeout=30s")
        try:
            host_pid = json.loads(podman("inspect", name).stdout)[0]["State"]["Pid"]
            status = dict(line.split(":\t", 1) for line in open(f"/proc/{host_pid}/status").read().splitlines() if ":\t" in line)
            assert status["Name"] == "grpc-init" and status["NSpid"].split()[-1] == "1", status
        finally:
            podman("rm", "-f", name, check=False)
    # docker/Dockerfile.from-release, as written: grpc-init taken from the loaded image.
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(GO_SERVER, context / "server")
    podman("build", "-q", "-f", str(ROOT / "docker" / "Dockerfile.from-release"), "--build-arg", f"GRPC_INIT={image}",
           "-t", "localhost/grpc-init-from-release:test", str(context), timeout=300)
    ran = podman("run", "--rm", "--network", "host", *podman.run_flags, "-e", "GRPC_INIT_READY=false",
                 "localhost/grpc-init-from-release:test", "/bin/grpc_health_probe", "-version")
    assert ran.stdout.startswith("grpc_health_probe (grpc-init) "), ran
    podman("rmi", "localhost/grpc-init-from-release:test", image, check=False)


def test_a_container_stopped_with_sigquit_is_drained(podman, names):
    """`podman run --stop-signal SIGQUIT` (as a pod's lifecycle.stopSignal) with
    GRPC_INIT_STOP_SIGNAL=SIGQUIT and GRPC_INIT_REWRITE_SIGNAL=3:15: `podman stop` sends SIGQUIT,
    grpc-init answers 503 draining at once, and the Go server gets SIGTERM a second later (not
    SIGQUIT, its stack dump): exit 143."""
    import http.client

    port, health, c = free_port(), free_port(), names()
    podman.run(c, "--stop-signal", "SIGQUIT",
               env={"GRPC_INIT_HEALTH_ADDR": f"127.0.0.1:{health}", "GRPC_INIT_DRAIN_DELAY": "1s",
                    "GRPC_INIT_STOP_SIGNAL": "SIGQUIT", "GRPC_INIT_REWRITE_SIGNAL": "3:15"},
               image_args=server_args(port))
    podman.await_log(c, "[grpc-init] ready: ")

    def get(path):
        conn = http.client.HTTPConnection("127.0.0.1", health, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    assert get("/readyz") == (200, "SERVING\n")
    stop = subprocess.Popen([*podman.base, "stop", "-t", "10", c], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        deadline = start + 5
        while (answer := get("/readyz")) != (503, "draining\n"):
            assert time.monotonic() < deadline, answer
            time.sleep(0.02)  # podman delivering the SIGQUIT, which nothing here can await; bounded
        stop.wait(timeout=20)
    finally:
        if stop.poll() is None:
            stop.kill()
    assert time.monotonic() - start >= 1.0, "the server got its signal only after the drain"
    logs = podman.logs(c)
    assert "[grpc-init] draining: SIGTERM goes to the child in 1s; the health endpoint answers draining (was SERVING)" in logs, logs
    assert podman.exit_code(c) == 143, logs
