"""One version per build: scripts/version.sh sets it, the binary says it, scripts/release.sh names
its files, SBOM and image after it (or refuses with one line), and the image archive imports
under a reference kubelet can ask for, with podman and with containerd's ctr."""
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time

import pytest

from conftest import BIN, ROOT

SCRIPTS = ROOT / "scripts"
RELEASE = re.search(r"^RELEASE=(\S+)$", (SCRIPTS / "version.sh").read_text(), re.M).group(1) if (SCRIPTS / "version.sh").exists() else None
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
# The OCI distribution spec's tag grammar.
OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# The settings podman needs on these machines (test_container.py finds them by trying).
PODMAN_RUN = ["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network", "host"]
LIMITS = [[], ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]]


def run(args, cwd=None, env=None, timeout=60):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def version_of(tree, *args):
    out = run([tree / "scripts" / "version.sh", *args], cwd=tree)
    assert out.returncode == 0 and out.stderr == "", out
    return out.stdout.strip()


def make_repo(tree, files):
    """A git repository at `tree` holding `files` (path: the file to copy, or text), committed."""
    for path, content in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            (tree / path).write_text(content)
        else:
            shutil.copy(content, tree / path)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one"]):
        assert run([*GIT, *args], cwd=tree).returncode == 0
    return run(["git", "rev-parse", "HEAD"], cwd=tree).stdout.strip()


def test_the_binary_says_the_version_the_script_gives():
    """What `swift build` stamped is what scripts/version.sh says of this tree now."""
    version = version_of(ROOT)
    assert run([BIN, "-version"]).stdout == f"grpc-init {version}\n"
    assert run([BIN, "grpc_health_probe", "-version"]).stdout == f"grpc_health_probe (grpc-init) {version}\n"


def test_the_version_follows_the_tag_the_commit_and_the_tree(tmp_path):
    """RELEASE at its tag, RELEASE-dev+REV elsewhere, +dirty/.dirty for uncommitted changes to
    what the binary is built from (not to tests or docs), RELEASE-dev with no git at all; the
    image tag is the version with '_' for '+'."""
    tree = tmp_path / "repo"
    head = make_repo(tree, {"scripts/version.sh": SCRIPTS / "version.sh", "Package.swift": "// p\n",
                            "Sources/a/a.swift": "let a = 1\n", "docs/x.md": "x\n"})
    dev = f"{RELEASE}-dev+{head[:12]}"
    assert version_of(tree) == dev
    assert version_of(tree, "--oci-tag") == f"{RELEASE}-dev_{head[:12]}"
    assert OCI_TAG.fullmatch(version_of(tree, "--oci-tag"))
    (tree / "docs" / "x.md").write_text("y\n")
    assert version_of(tree) == dev, "a change outside what the binary is built from"
    (tree / "Sources" / "a" / "b.swift").write_text("let b = 2\n")
    assert version_of(tree) == dev + ".dirty", "an untracked source is built in"
    (tree / "Sources" / "a" / "b.swift").unlink()
    (tree / "Package.swift").write_text("// changed\n")
    assert version_of(tree) == dev + ".dirty"
    assert run(["git", "checkout", "-q", "Package.swift"], cwd=tree).returncode == 0
    assert run([*GIT, "tag", f"v{RELEASE}"], cwd=tree).returncode == 0
    assert version_of(tree) == RELEASE
    (tree / "Sources" / "a" / "a.swift").write_text("let a = 3\n")
    assert version_of(tree) == f"{RELEASE}+dirty"
    assert version_of(tree, "--oci-tag") == f"{RELEASE}_dirty"
    # A source tarball: no git, unpacked inside another repository's work tree.
    archive = run(["git", "archive", "--prefix=unpacked/", "-o", tmp_path / "src.tar", "HEAD"], cwd=tree)
    assert archive.returncode == 0, archive
    with tarfile.open(tmp_path / "src.tar") as tar:
        tar.extractall(tree, filter="tar")
    assert version_of(tree / "unpacked") == f"{RELEASE}-dev"
    # The Swift source the build compiles, rewritten only when the version changes.
    swift = tmp_path / "BuildVersion.swift"
    version_of(tree, "--swift", swift)
    assert f'let buildVersion = "{RELEASE}+dirty"\n' in swift.read_text()
    os.utime(swift, (1, 1))
    version_of(tree, "--swift", swift)
    assert swift.stat().st_mtime == 1


@pytest.fixture
def release_repo(tmp_path):
    """A repository with the release scripts and a `swift` and `strip` on PATH that stand in for
    the toolchain: the "build" writes a binary saying `grpc-init $SAYS`."""
    tree = tmp_path / "repo"
    head = make_repo(tree, {f"scripts/{n}": SCRIPTS / n for n in ("release.sh", "release-files.py", "version.sh")}
                     | {"LICENSE": ROOT / "LICENSE", "Package.swift": "// p\n", "Sources/a/a.swift": "let a = 1\n"})
    toolchain = tmp_path / "toolchain" / "usr"
    (toolchain / "bin").mkdir(parents=True)
    (toolchain / "share" / "swift").mkdir(parents=True)
    (toolchain / "share" / "swift" / "LICENSE.txt").write_text("swift licence\n")
    (toolchain / "bin" / "swift").write_text(
        '#!/bin/sh\ncase "$1" in\n'
        '  build) mkdir -p .build/release && printf \'#!/bin/sh\\necho "grpc-init %s"\\n\' "$SAYS" > .build/release/grpc-init'
        ' && chmod +x .build/release/grpc-init ;;\n'
        '  --version) echo "Swift version 6.3.1 (swift-6.3.1-RELEASE)" ;;\nesac\n')
    (toolchain / "bin" / "strip").write_text('#!/bin/sh\n[ "$1" = -o ] && cp "$3" "$2"\n')
    for tool in ("swift", "strip"):
        (toolchain / "bin" / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{toolchain / 'bin'}:{os.environ['PATH']}", GRPC_INIT_SOURCE="https://example.invalid/grpc-init")

    def release(says):
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        result = run([tree / "scripts" / "release.sh", out], cwd=tree, env=dict(env, SAYS=says), timeout=120)
        return result, sorted(p.name for p in out.iterdir()) if out.exists() else []
    return tree, head, release


def test_release_names_everything_after_the_version(release_repo, tmp_path):
    """The files, the SBOM's version, the image's version label and its index: ref.name a tag
    only (the image-layout spec's), io.containerd.image.name the full reference."""
    tree, head, release = release_repo
    version, tag = f"{RELEASE}-dev+{head[:12]}", f"{RELEASE}-dev_{head[:12]}"
    result, names = release(version)
    assert result.returncode == 0, result.stderr
    assert names == sorted(["checksums.txt", f"grpc-init-{version}-linux-amd64.tar.gz", f"grpc-init-{version}.spdx.json",
                            f"grpc-init-{version}.oci.tar"])
    out = tmp_path / "out"
    packages = {p["name"]: p for p in json.loads((out / f"grpc-init-{version}.spdx.json").read_text())["packages"]}
    assert packages["grpc-init"]["versionInfo"] == version
    with tarfile.open(out / f"grpc-init-{version}.oci.tar") as tar:
        index = json.load(tar.extractfile("index.json"))
        [descriptor] = index["manifests"]
        manifest = json.load(tar.extractfile("blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")))
    assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": tag,
                                         "io.containerd.image.name": f"docker.io/library/grpc-init:{tag}"}
    assert OCI_TAG.fullmatch(tag)
    assert manifest["annotations"]["org.opencontainers.image.version"] == version


def test_release_refuses_a_binary_of_another_version(release_repo):
    _, head, release = release_repo
    result, names = release("0.0.0-other")
    assert result.returncode == 1 and names == []
    assert result.stderr == (f'release.sh: the binary says "grpc-init 0.0.0-other" but the release would be grpc-init '
                             f"{RELEASE}-dev+{head[:12]} (did the tree change during the build?)\n")


def test_release_refuses_a_tag_the_version_script_does_not_name(release_repo):
    tree, head, release = release_repo
    assert run([*GIT, "tag", "v9.9.9"], cwd=tree).returncode == 0
    result, names = release("9.9.9")
    assert result.returncode == 1 and names == []
    assert result.stderr == f"version.sh: HEAD is tagged v9.9.9 but scripts/version.sh sets {RELEASE}\n"


def test_release_refuses_a_version_already_released_at_another_commit(release_repo):
    """After vRELEASE, a later commit's RELEASE-dev would sort before the release it follows."""
    tree, head, release = release_repo
    assert run([*GIT, "tag", f"v{RELEASE}"], cwd=tree).returncode == 0
    assert run([*GIT, "commit", "-q", "--allow-empty", "-m", "two"], cwd=tree).returncode == 0
    result, names = release(RELEASE)
    assert result.returncode == 1 and names == []
    assert result.stderr == (f"version.sh: v{RELEASE} is released (commit {head[:12]}): "
                             "set the next version in scripts/version.sh\n")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The release's image archive of the built binary, as scripts/release.sh makes it."""
    out = tmp_path_factory.mktemp("archive")
    version, tag = version_of(ROOT), version_of(ROOT, "--oci-tag")
    made = run(["python3", SCRIPTS / "release-files.py", "--binary", BIN, "--version", version, "--tag", tag,
                "--revision", "0" * 40, "--source", "unknown", "--swift", "6.3.1", "--sbom", out / "sbom.json",
                "--image", out / f"grpc-init-{version}.oci.tar"])
    assert made.returncode == 0, made.stderr
    return out / f"grpc-init-{version}.oci.tar", version, tag


@pytest.fixture
def podman():
    """podman with storage of this test's own."""
    assert shutil.which("podman"), "podman is missing: the test command installs it"
    home = tempfile.mkdtemp(prefix="podman-")  # short: podman refuses a runroot of over 50 bytes
    base = ["podman", "--root", f"{home}/root", "--runroot", f"{home}/run", "--storage-driver", "vfs"]
    yield lambda *args: run([*base, *args], timeout=300)
    run([*base, "rm", "-a", "-f"])
    shutil.rmtree(home, ignore_errors=True)


def test_podman_loads_the_image_under_its_reference_and_runs_it(podman, archive):
    """docs/releases.md's podman path: `podman load -i`, then the image by the name kubelet
    would ask for."""
    path, version, tag = archive
    loaded = podman("load", "-i", path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().splitlines()[-1] == f"Loaded image: docker.io/library/grpc-init:{tag}"
    for limits in LIMITS:
        ran = podman("run", "--rm", *PODMAN_RUN, *limits, "--entrypoint", "/grpc-init", f"grpc-init:{tag}", "-version")
        if "rlimit" not in ran.stderr:
            break  # podman raises the container's rlimits unless told, which some machines refuse
    assert (ran.returncode, ran.stdout) == (0, f"grpc-init {version}\n"), ran.stderr


@pytest.fixture
def ctr():
    """A containerd of this test's own (its root, state and socket), without its CRI plugin."""
    if not (shutil.which("containerd") and shutil.which("ctr")):
        pytest.skip("containerd or ctr is not installed")
    home = tempfile.mkdtemp(prefix="ctrd-")  # short: a unix socket's path has at most 107 bytes
    socket = f"{home}/containerd.sock"
    with open(f"{home}/config.toml", "w") as f:
        f.write(f'version = 2\nroot = "{home}/root"\nstate = "{home}/state"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
                f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{home}/opt"\n')
    with open(f"{home}/log", "w") as log:
        daemon = subprocess.Popen(["containerd", "--config", f"{home}/config.toml"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while run(["ctr", "--address", socket, "version"]).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, open(f"{home}/log").read()[-2000:]
            time.sleep(0.05)  # containerd says nothing when its socket is up; bounded polling
        yield lambda *args: run(["ctr", "--address", socket, "-n", "k8s.io", *args], timeout=120)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.root
def test_ctr_imports_the_image_under_the_reference_kubelet_asks_for(ctr, archive):
    """docs/releases.md's containerd path: `ctr -n k8s.io images import` names the image
    docker.io/library/grpc-init:TAG, what a pod's `image: grpc-init:TAG` is normalised to."""
    path, version, tag = archive
    imported = ctr("images", "import", "--snapshotter", "native", path)
    assert imported.returncode == 0, imported.stderr
    assert ctr("images", "ls", "-q").stdout.split() == [f"docker.io/library/grpc-init:{tag}"]
    ran = ctr("run", "--rm", "--snapshotter", "native", f"docker.io/library/grpc-init:{tag}", "version-check", "/grpc-init", "-version")
    assert (ran.returncode, ran.stdout) == (0, f"grpc-init {version}\n"), ran.stderr
