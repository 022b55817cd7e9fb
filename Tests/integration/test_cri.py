"""grpc-init under containerd as kubelet drives it: the CRI's RuntimeService and ImageService
(runtime.v1) over containerd's socket, with the messages written by hand from the field numbers
of the CRI's api.proto. The tests start a containerd of their own (its own root, state, socket
and configuration in a temporary directory; the native snapshotter, cgroupfs, no CNI: every pod
on the host's network), import the release's OCI image archive and a pause image built here,
and at the end remove every pod, stop the daemon and remove its directories. Each test runs a
pod sandbox and, in it, the release image with grpc-init as its ENTRYPOINT and the static
grpc-go server bind-mounted as /server. Every wait has a deadline."""
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import grpc
import pytest

from conftest import BIN, GO_SERVER, ROOT
from peers import protobuf_fields

pytestmark = [pytest.mark.containerd, pytest.mark.root]

# CRI enums (api.proto).
POD, CONTAINER, NODE = 0, 1, 2                       # NamespaceMode
CREATED, RUNNING, EXITED = 0, 1, 2                   # ContainerState
NAMESPACE = "k8s.io"                                 # containerd's namespace of the CRI's images
PAUSE_IMAGE = "localhost/grpc-init-test/pause:1"     # built here; the sandbox image of the daemon
TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "gcc")


# MARK: protobuf, by hand

def varint(value):
    value &= (1 << 64) - 1  # a negative int64 is sent as its two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message(*fields):
    """A message from (number, value) pairs: bytes, str and encoded messages length-delimited,
    int and bool as varints, a list as a repeated field, None left out."""
    out = bytearray()
    for number, value in fields:
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if isinstance(item, (bool, int)):
                out += varint(number << 3) + varint(int(item))
            else:
                data = item.encode() if isinstance(item, str) else item
                out += varint((number << 3) | 2) + varint(len(data)) + data
    return bytes(out)


def string_map(pairs):
    """A map<string, string>: one entry message (key 1, value 2) per pair."""
    return [message((1, key), (2, value)) for key, value in pairs.items()]


def decode(data):
    """{field number: [values]}: varints as ints, length-delimited fields as bytes."""
    fields = {}
    for number, value in protobuf_fields(data):
        fields.setdefault(number, []).append(value)
    return fields


def first(fields, number, default=None):
    return fields.get(number, [default])[0]


def text(fields, number):
    return first(fields, number, b"").decode()


def as_int32(value):
    return value - (1 << 64) if value >= 1 << 63 else value


# MARK: the CRI's messages

def namespaces():
    """NamespaceOption: the node's network, the container's own PID namespace (as kubelet asks
    for a v1 pod), the pod's IPC."""
    return message((1, NODE), (2, CONTAINER), (3, POD))


def sandbox_config(name, uid, log_directory):
    metadata = message((1, name), (2, uid), (3, "grpc-init-test"), (4, 0))
    security = message((1, namespaces()))                       # LinuxSandboxSecurityContext
    return message((1, metadata), (3, log_directory), (8, message((2, security))))


def security_context(read_only=False, user=None):
    """LinuxContainerSecurityContext: with `user`, the restricted profile of a Deployment
    (runAsUser and runAsGroup, no new privileges, every capability dropped)."""
    fields = [(3, namespaces()), (7, read_only)]
    if user is not None:
        fields += [(1, message((2, ["ALL"]))), (5, message((1, user))), (12, message((1, user))), (11, True)]
    return message(*fields)


def container_config(name, image, args, command=(), env=None, mounts=(), read_only=False, user=None):
    mount_messages = [message((1, inside), (2, str(host)), (3, True)) for inside, host in mounts]
    return message((1, message((1, name), (2, 0))), (2, message((1, image))), (3, list(command)), (4, list(args)),
                   (6, [message((1, k), (2, v)) for k, v in (env or {}).items()]), (7, mount_messages),
                   (11, f"{name}.log"), (15, message((2, security_context(read_only, user)))))


class Cri:
    """runtime.v1.RuntimeService and ImageService on grpcio, requests and answers as raw bytes."""
    IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}

    def __init__(self, address):
        self.channel = grpc.insecure_channel(f"unix://{address}")

    def __call__(self, method, request=b"", timeout=30):
        service = "ImageService" if method in self.IMAGE_METHODS else "RuntimeService"
        call = self.channel.unary_unary(f"/runtime.v1.{service}/{method}")
        return decode(call(request, timeout=timeout))

    def close(self):
        self.channel.close()


# MARK: OCI image archives

def sha256(data):
    return hashlib.sha256(data).hexdigest()


def tar_of(entries):
    """A tar of (name, bytes or None for a directory, mode), owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_oci_archive(path, name, layers, config):
    """An OCI image layout in a tar, one linux/amd64 image named `name` (a full reference, as
    containerd reads it from io.containerd.image.name)."""
    config = dict(config, architecture="amd64", os="linux",
                  rootfs={"type": "layers", "diff_ids": ["sha256:" + sha256(layer) for layer in layers]})
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha256(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + sha256(layer),
                    "size": len(layer)} for layer in layers],
    }, sort_keys=True).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sha256(manifest),
        "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]},
        sort_keys=True).encode()
    blobs = {sha256(b): b for b in [*layers, config_bytes, manifest]}
    path.write_bytes(tar_of([("blobs", None, 0o755), ("blobs/sha256", None, 0o755), ("index.json", index, 0o644),
                             ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)]
                            + [(f"blobs/sha256/{digest}", data, 0o644) for digest, data in sorted(blobs.items())]))


def read_oci_archive(path):
    """The first image of an OCI archive: (its layers, its config, its config's digest)."""
    with tarfile.open(path) as tar:
        def blob(digest):
            return tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}").read()
        index = json.loads(tar.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = manifest["config"]["digest"]
        return [blob(layer["digest"]) for layer in manifest["layers"]], json.loads(blob(config)), config


# The sandbox's process: sleeps until SIGTERM or SIGINT and exits 0 (as PID 1 a signal without
# a handler would be ignored, so both are caught).
PAUSE_C = r"""
#include <signal.h>
#include <string.h>
static volatile sig_atomic_t stop;
static void on_signal(int signo) { (void)signo; stop = 1; }
int main(void) {
    sigset_t blocked, waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &blocked, &waiting);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, 0);
    sigaction(SIGINT, &action, 0);
    while (!stop) sigsuspend(&waiting);
    return 0;
}
"""


# MARK: the daemon

def config_toml(d):
    return f"""version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # the sandbox asks for -998, below the daemon's own, which needs CAP_SYS_RESOURCE
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"""


class Node:
    """The daemon as the tests see it: the CRI client, ctr, and the images imported."""

    def __init__(self, directory, cri):
        self.dir = directory
        self.cri = cri
        self.images = {}

    def ctr(self, *args, timeout=120):
        out = subprocess.run(["ctr", "--address", str(self.dir / "containerd.sock"), "-n", NAMESPACE, *args],
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"ctr {' '.join(args)}: {out.stderr.strip()}"
        return out.stdout

    def image_names(self):
        return {n for n in self.ctr("images", "ls", "-q").split() if not n.startswith("sha256:")}

    def import_archive(self, path):
        """Imports an OCI archive: (the name containerd gave the image, whatever the archive's
        annotations call it; the image's ID, its config's digest)."""
        before = self.image_names()
        self.ctr("images", "import", "--snapshotter", "native", str(path))
        added = sorted(self.image_names() - before)
        assert len(added) == 1, f"{path.name} imported as {added}"
        image_id = read_oci_archive(path)[2]
        self.await_image(image_id)
        return added[0], image_id

    def await_image(self, reference, timeout=10):
        """Until the CRI has taken in an image containerd has (it follows containerd's events)."""
        deadline = time.monotonic() + timeout
        while not self.image_status(reference):
            assert time.monotonic() < deadline, f"the CRI has no {reference} after {timeout}s"
            time.sleep(0.01)  # the CRI's image store follows containerd's events; bounded

    def image_status(self, reference):
        """ImageStatus's Image (its fields), empty when the CRI does not find `reference`."""
        return decode(first(self.cri("ImageStatus", message((1, message((1, reference))))), 1, b""))


def missing_prerequisite():
    if os.geteuid() != 0:
        return "containerd needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (scripts/install-deps.sh installs them)"
    if not Path("/sys/fs/cgroup").is_dir() or not os.listdir("/sys/fs/cgroup"):
        return "no cgroup file system at /sys/fs/cgroup"
    return None


# A machine without what containerd needs skips the whole file, in one line that says what.
if why := missing_prerequisite():
    pytest.skip(f"containerd: {why}", allow_module_level=True)


def leftover_shims(socket_path):
    """Our daemon's shims (by its socket in their command line), once it is gone."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket_path).encode() in argv:
                found.append(int(entry.name))
    return found


def unmount_under(directory):
    """Whatever is still mounted under `directory`, deepest first, detached."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{directory}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=10)


@pytest.fixture(scope="session")
def node(tmp_path_factory):
    """A containerd of the tests' own with the release image and a pause image imported;
    everything it ran is removed, it is stopped and its directories removed, whatever happened."""
    assert BIN.exists(), f"{BIN} is missing: build with `swift build -c release` first"
    d = tmp_path_factory.mktemp("containerd")
    (d / "config.toml").write_text(config_toml(d))
    log = open(d / "containerd.log", "w+")
    daemon = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    cri = Cri(d / "containerd.sock")
    node = Node(d, cri)
    try:
        try:
            grpc.channel_ready_future(cri.channel).result(timeout=30)
            version = cri("Version", message((1, "v1")))
        except (grpc.FutureTimeoutError, grpc.RpcError) as e:
            log.seek(0)
            lines = log.read().strip().splitlines() or [str(e)]
            pytest.fail(f"containerd did not start (exit {daemon.poll()}): {lines[-1]}")
        assert text(version, 2) == "containerd", version
        images = d / "images"
        images.mkdir()
        # The pause image: a static program of its own, FROM scratch.
        (images / "pause.c").write_text(PAUSE_C)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(images / "pause"), str(images / "pause.c")], check=True,
                       capture_output=True, timeout=120)
        write_oci_archive(images / "pause.oci.tar", PAUSE_IMAGE, [tar_of([("pause", (images / "pause").read_bytes(), 0o755)])],
                          {"config": {"Entrypoint": ["/pause"]}})
        assert node.import_archive(images / "pause.oci.tar")[0] == PAUSE_IMAGE
        # The release's image archive, as scripts/release.sh writes it, of the binary under test.
        release = images / "release.oci.tar"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "release-files.py"), "--binary", str(BIN),
                        "--version", "0.0.0-test", "--tag", "0.0.0-test", "--revision", "0" * 40, "--source", "test", "--swift", "0",
                        "--sbom", str(images / "release.spdx.json"), "--image", str(release)],
                       check=True, capture_output=True, timeout=120)
        node.release_name, release_id = node.import_archive(release)
        node.release_status = node.image_status(node.release_name)
        node.images["release"] = node.release_name
        layers, config, _ = read_oci_archive(release)
        if not node.release_status:
            # test_the_release_image_is_found_by_its_name fails; the others still run, on the
            # same layers and config under a full reference. Its config's bytes differ (an image
            # of its own): the CRI looks an image up by the first of its names, and would take
            # the unresolvable one.
            path = images / "release-named.oci.tar"
            write_oci_archive(path, "localhost/grpc-init-test/release:named", layers, config)
            node.images["release"], named_id = node.import_archive(path)
            assert named_id != release_id
        # The same image with a STOPSIGNAL in its config, as a Dockerfile's STOPSIGNAL sets it.
        for stop_signal in ("SIGINT", "SIGQUIT"):
            variant = json.loads(json.dumps(config))
            variant["config"]["StopSignal"] = stop_signal
            path = images / f"stopsignal-{stop_signal}.oci.tar"
            write_oci_archive(path, f"localhost/grpc-init-test/stopsignal:{stop_signal.lower()}", layers, variant)
            node.images[stop_signal], _ = node.import_archive(path)
        yield node
    finally:
        try:
            for sandbox in cri("ListPodSandbox", timeout=10).get(1, []):
                sandbox_id = message((1, text(decode(sandbox), 1)))
                cri("StopPodSandbox", sandbox_id, timeout=30)
                cri("RemovePodSandbox", sandbox_id, timeout=30)
        except grpc.RpcError:
            pass  # a daemon that is not answering: its shims are ended below
        cri.close()
        daemon.terminate()
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=15)
        for shim in leftover_shims(d / "containerd.sock"):
            # A container's first process first: SIGKILL to it ends its whole PID namespace.
            try:
                pids = [*children(shim), shim]
            except OSError:
                pids = [shim]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        log.close()
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


# MARK: pods and containers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pod:
    """A pod sandbox on the host's network and the containers a test runs in it."""

    def __init__(self, node, name):
        self.node = node
        self.cri = node.cri
        self.logs = node.dir / "logs" / name
        self.logs.mkdir(parents=True)
        self.config = sandbox_config(name, str(uuid.uuid4()), str(self.logs))
        self.id = text(self.cri("RunPodSandbox", message((1, self.config)), timeout=60), 1)
        self.names = {}

    def run(self, name, args, image=None, **options):
        """CreateContainer and StartContainer of `image` (the release's by default), the server
        mounted at /server; returns the container's ID."""
        config = container_config(name, image or self.node.images["release"], args, mounts=[("/server", GO_SERVER)], **options)
        container = text(self.cri("CreateContainer", message((1, self.id), (2, config), (3, self.config)), timeout=60), 1)
        self.names[container] = name
        self.cri("StartContainer", message((1, container)), timeout=60)
        return container

    def status(self, container):
        """ContainerStatus: (the status's fields, the verbose info as a dict)."""
        answer = self.cri("ContainerStatus", message((1, container), (2, True)))
        info = {text(decode(entry), 1): text(decode(entry), 2) for entry in answer.get(2, [])}
        return decode(first(answer, 1)), info

    def exit_code(self, container, timeout):
        """The exit code ContainerStatus reports once the container has exited, by `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            status, _ = self.status(container)
            if first(status, 3, CREATED) == EXITED:
                return as_int32(first(status, 7, 0))
            assert time.monotonic() < deadline, f"still running after {timeout}s: {self.log(container)}"
            time.sleep(0.02)  # ContainerStatus is polled, as kubelet's relist does; bounded

    def stop(self, container, timeout):
        """StopContainer with kubelet's grace period; returns how long the call took."""
        started = time.monotonic()
        self.cri("StopContainer", message((1, container), (2, timeout)), timeout=timeout + 30)
        return time.monotonic() - started

    def log(self, container):
        """The container's output from its CRI log file (each line: time, stream, tag, text)."""
        path = self.logs / f"{self.names[container]}.log"
        if not path.exists():
            return ""
        return "".join(line.split(" ", 3)[3] + "\n" for line in path.read_text().splitlines() if line.count(" ") >= 3)

    def await_log(self, container, wanted, timeout=20):
        """The container's output once it holds `wanted`, by `timeout`; fails at once if the
        container exits first."""
        deadline = time.monotonic() + timeout
        while wanted not in (out := self.log(container)):
            status, _ = self.status(container)
            assert first(status, 3, CREATED) == RUNNING, f"exited ({as_int32(first(status, 7, 0))}) before {wanted!r}: {out}"
            assert time.monotonic() < deadline, f"no {wanted!r} in {timeout}s: {out}"
            time.sleep(0.02)  # the log file is polled, as kubectl logs would; bounded
        return out

    def exec_sync(self, container, cmd, timeout=10):
        """ExecSync as kubelet's exec probe sends it: (exit code, stdout, stderr)."""
        answer = self.cri("ExecSync", message((1, container), (2, list(cmd)), (3, timeout)), timeout=timeout + 30)
        return as_int32(first(answer, 3, 0)), text(answer, 1), text(answer, 2)

    def pid(self, container):
        """grpc-init's PID on the host, from ContainerStatus's verbose info."""
        _, info = self.status(container)
        return json.loads(info["info"])["pid"]

    def remove(self):
        sandbox = message((1, self.id))
        self.cri("StopPodSandbox", sandbox, timeout=60)
        self.cri("RemovePodSandbox", sandbox, timeout=60)


@pytest.fixture
def pod(node, request):
    name = request.node.name[:40].strip("_").replace("[", "-").replace("]", "").lower()
    p = Pod(node, f"{name}-{uuid.uuid4().hex[:8]}")
    try:
        yield p
    finally:
        p.remove()


def server(port, *extra):
    return ["/server", "-addr", f"127.0.0.1:{port}", *extra]


def read_cmdline(proc_dir):
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def server_pid(pid):
    """grpc-init's child that runs /server (its other child is the health agent)."""
    for child in children(pid):
        if os.readlink(f"/proc/{child}/exe").endswith("/server") or Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"/server"):
            return child
    raise AssertionError(f"no /server among the children of {pid}")


# MARK: the image

def test_the_release_image_is_found_by_its_name(node):
    """kubelet asks for the image a Pod names, which the CRI normalizes (`grpc-init:1.0` is
    docker.io/library/grpc-init:1.0): the name `ctr images import` gives the release's archive
    must be one the CRI finds, or a Pod naming it pulls from a registry instead."""
    image = node.release_status
    assert image, f"the CRI does not find {node.release_name!r}, the name containerd gave the release's image"
    layers, config, config_digest = read_oci_archive(node.dir / "images" / "release.oci.tar")
    assert text(image, 1) == config_digest
    assert config["config"]["Entrypoint"] == ["/grpc-init", "--"]


# MARK: exec probes

def test_exec_sync_probe_with_and_without_flags(pod):
    """kubelet's exec probe (ExecSync) of /bin/grpc_health_probe in two containers of one pod on
    the host's network: with no flags each asks its own grpc-init's agent (the abstract socket
    is named for the PID namespace, so the two do not meet); with -addr it dials the server."""
    up, down, nothing = free_port(), free_port(), free_port()
    serving = pod.run("serving", server(up, "-services", "down=NOT_SERVING"))
    not_serving = pod.run("not-serving", server(down, "-status", "NOT_SERVING"))
    pod.await_log(serving, "[grpc-init] ready: ")
    pod.await_log(not_serving, "[grpc-init] health: ")
    probe = "/bin/grpc_health_probe"
    assert pod.exec_sync(serving, [probe]) == (0, "", "status: SERVING\n")
    assert pod.exec_sync(serving, [probe, f"-addr=127.0.0.1:{up}"]) == (0, "", "status: SERVING\n")
    assert pod.exec_sync(serving, [probe, f"-addr=127.0.0.1:{up}", "-service=down"]) == (
        4, "", 'service unhealthy (responded with "NOT_SERVING")\n')
    assert pod.exec_sync(not_serving, [probe]) == (4, "", 'service unhealthy (responded with "NOT_SERVING")\n')
    assert pod.exec_sync(not_serving, [probe, f"-addr=127.0.0.1:{down}"]) == (
        4, "", 'service unhealthy (responded with "NOT_SERVING")\n')
    code, _, err = pod.exec_sync(serving, [probe, f"-addr=127.0.0.1:{nothing}"])
    assert code == 2 and "connection refused" in err, err


def test_exec_sync_probe_with_no_flags_when_nothing_listens(pod):
    """With no flags, in a container whose child listens on nothing (a probe waiting on a silent
    port of the node): 2, with the agent's reason, as the probe says when nothing answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        child = ["/grpc-init", "grpc_health_probe", f"-addr=127.0.0.1:{silent.getsockname()[1]}", "-connect-timeout=60s"]
        container = pod.run("c", child)
        deadline = time.monotonic() + 10
        while (answer := pod.exec_sync(container, ["/bin/grpc_health_probe"]))[0] == 1:
            assert time.monotonic() < deadline, answer  # 1: no agent to ask yet
            time.sleep(0.02)  # the agent's start, which nothing outside the container signals; bounded
        code, _, err = answer
        assert code == 2 and "no listening socket found yet" in err, answer


def test_exec_sync_timeout_cuts_a_probe_of_a_hung_server(pod):
    """A server that takes a minute to answer Check and a probe willing to wait 30 s: ExecSync's
    timeout (kubelet's timeoutSeconds) ends it at 1 s, the runtime's verdict, not the probe's."""
    port = free_port()
    container = pod.run("c", server(port, "-delay", "60s"), env={"GRPC_INIT_READY": "false"})
    pod.await_log(container, "READY ")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        pod.exec_sync(container, ["/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}", "-connect-timeout=30s",
                                  "-rpc-timeout=30s"], timeout=1)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5, elapsed
    # DEADLINE_EXCEEDED is what kubelet reads as the probe's timeout.
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.value
    assert "timeout 1s exceeded" in error.value.details(), error.value
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and f"-addr=127.0.0.1:{port}".encode() in read_cmdline(p)], \
        "the probe was killed, not left running"


# MARK: stopping

@pytest.mark.parametrize("remap", ["none", "flag", "env"])
def test_stop_container_passes_sigterm_on(pod, remap):
    """StopContainer with kubelet's grace period: the server ends on the forwarded SIGTERM at
    once; ContainerStatus says 143 (128+15), or 0 with -e 143 / GRPC_INIT_REMAP_EXIT=143."""
    port = free_port()
    options = {"none": {}, "flag": {"command": ["/grpc-init", "-e", "143", "--"]},
               "env": {"env": {"GRPC_INIT_REMAP_EXIT": "143"}}}[remap]
    container = pod.run("c", server(port), **options)
    pod.await_log(container, "[grpc-init] ready: ")
    assert pod.stop(container, 10) < 5, "the server ended on the forwarded SIGTERM, not at the grace period"
    assert pod.exit_code(container, 5) == (143 if remap == "none" else 0)


def test_stop_container_kills_a_server_that_ignores_sigterm(pod):
    port = free_port()
    container = pod.run("c", server(port, "-ignore-sigterm"))
    pod.await_log(container, "[grpc-init] ready: ")
    elapsed = pod.stop(container, 2)
    assert 2 <= elapsed < 8, elapsed
    assert pod.exit_code(container, 5) == 137


@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGQUIT"])
def test_the_images_stop_signal_reaches_the_server(pod, stop_signal):
    """STOPSIGNAL in the image's config: StopContainer sends it, grpc-init forwards it, the Go
    server ends by it (SIGINT: killed, 130; SIGQUIT: Go's dump and exit 2)."""
    port = free_port()
    container = pod.run("c", server(port), image=pod.node.images[stop_signal])
    pod.await_log(container, "[grpc-init] ready: ")
    assert pod.stop(container, 10) < 5
    if stop_signal == "SIGINT":
        assert pod.exit_code(container, 5) == 130
    else:
        assert pod.exit_code(container, 5) == 2
        assert "SIGQUIT: quit" in pod.log(container)


def test_exit_unhealthy_after_is_seen_by_container_status(pod):
    """-exit-unhealthy-after: the server hangs (SIGSTOP from the node), grpc-init stops it and
    exits 125, which is what kubelet reads in ContainerStatus (and restarts the container)."""
    port = free_port()
    container = pod.run("c", server(port), env={"GRPC_INIT_EXIT_UNHEALTHY_AFTER": "1s"})
    pod.await_log(container, "[grpc-init] ready: ")
    hung = server_pid(pod.pid(container))
    os.kill(hung, signal.SIGSTOP)
    try:
        pod.await_log(container, "[grpc-init] error: health: ", timeout=10)
    finally:
        os.kill(hung, signal.SIGCONT)  # the SIGTERM it was sent then ends it
    assert pod.exit_code(container, 10) == 125


def test_ready_timeout_is_seen_by_container_status(pod):
    port = free_port()
    container = pod.run("c", server(port, "-status", "NOT_SERVING"), env={"GRPC_INIT_READY_TIMEOUT": "1s"})
    assert pod.exit_code(container, 15) == 124
    assert "-ready-timeout" in pod.log(container)


# MARK: the pod's settings

def test_read_only_root_and_an_unprivileged_user(pod):
    """readOnlyRootFilesystem, runAsUser/runAsGroup 65532, no new privileges, every capability
    dropped: grpc-init, its agent and the server run as 65532, the gate finds the server and the
    exec probe (which runs as 65532 too) asks the agent."""
    port = free_port()
    container = pod.run("c", server(port), read_only=True, user=65532)
    pod.await_log(container, "[grpc-init] ready: ")
    pid = pod.pid(container)
    for process in [pid, *children(pid)]:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{process}/status").read_text().splitlines() if ":\t" in line)
        assert status["Uid"].split()[0] == "65532" and status["Gid"].split()[0] == "65532", status
        assert int(status["CapEff"], 16) == 0, status
    assert pod.exec_sync(container, ["/bin/grpc_health_probe"]) == (0, "", "status: SERVING\n")
    assert pod.exec_sync(container, ["/bin/grpc_health_probe", f"-addr=127.0.0.1:{port}"]) == (0, "", "status: SERVING\n")
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert root[5].split(",")[0] == "ro", root


def test_the_health_port_answers_from_the_node(pod):
    """-health-addr on the host's network: kubelet's httpGet and grpc probes, sent from the node;
    then StopContainer with a drain: 503 draining at once, the server's SIGTERM a second later."""
    import http.client

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port, health = free_port(), free_port()
    container = pod.run("c", server(port, "-services", "down=NOT_SERVING"),
                        env={"GRPC_INIT_HEALTH_ADDR": f"127.0.0.1:{health}", "GRPC_INIT_DRAIN_DELAY": "1s"})
    pod.await_log(container, "[grpc-init] ready: ")

    def get(path):
        conn = http.client.HTTPConnection("127.0.0.1", health, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    assert get("/readyz") == (200, "SERVING\n")
    assert get("/readyz?service=down") == (503, "NOT_SERVING\n")
    assert get("/livez") == (200, "SERVING\n")
    with grpc.insecure_channel(f"127.0.0.1:{health}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="down"), timeout=5).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
    stopping = pod.cri.channel.unary_unary("/runtime.v1.RuntimeService/StopContainer").future(
        message((1, container), (2, 10)), timeout=40)
    started = time.monotonic()
    deadline = started + 5
    while get("/readyz") != (503, "draining\n"):
        assert time.monotonic() < deadline, "no draining answer after StopContainer"
        time.sleep(0.02)  # the runtime delivering SIGTERM, which nothing here can await; bounded
    stopping.result(timeout=40)
    assert time.monotonic() - started >= 1.0, "the server got SIGTERM only after the drain"
    assert pod.exit_code(container, 5) == 143
