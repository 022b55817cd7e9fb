#!/usr/bin/env python3
"""The release's SBOM (SPDX 2.3, JSON) and OCI image archive, byte for byte the same for the same
inputs: times from SOURCE_DATE_EPOCH, owners and modes fixed, entries sorted. Called by
scripts/release.sh, which builds the binary."""
import argparse
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
# The image's name in containerd once imported: the full reference kubelet normalises a pod's
# `image: grpc-init:TAG` to, in a namespace no one else can push to.
REPOSITORY = "docker.io/library/grpc-init"
DESCRIPTION = ("Init process for a gRPC server's container: supervises the server (signals, zombies, exit status), "
               "gates and serves its health with no configuration, and is a drop-in grpc_health_probe")


def debian_version(package):
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True).stdout


def purl_deb(package, version):
    return f"pkg:deb/debian/{package}@{version.replace(':', '%3A')}?arch=amd64&distro=debian-12"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sbom(args, binary):
    """grpc-init and every component statically linked into it, each with its exact version."""
    linked = [
        ("openssl", "libssl-dev", "Apache-2.0", "OpenSSL: TLS, X.509 and the crypto the probe and the agent use"),
        ("zlib", "zlib1g-dev", "Zlib", "zlib: gzip for gRPC messages"),
        ("glibc", "libc6-dev", "LGPL-2.1-or-later", "the GNU C Library, linked statically"),
        ("libstdc++", "libstdc++-12-dev", "GPL-3.0-or-later WITH GCC-exception-3.1", "the C++ runtime the Swift runtime uses"),
    ]
    packages = [{
        "name": "grpc-init", "SPDXID": "SPDXRef-Package-grpc-init", "versionInfo": args.version,
        "downloadLocation": args.source if args.source.startswith(("http", "git+")) else "NOASSERTION",
        "filesAnalyzed": False, "licenseConcluded": "Apache-2.0", "licenseDeclared": "Apache-2.0", "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION", "checksums": [{"algorithm": "SHA256", "checksumValue": sha256(binary)}],
        "description": DESCRIPTION, "sourceInfo": f"revision {args.revision}",
    }, {
        "name": "swift", "SPDXID": "SPDXRef-Package-swift", "versionInfo": args.swift, "supplier": "Organization: Swift.org",
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "Apache-2.0 WITH Swift-exception",
        "licenseDeclared": "Apache-2.0 WITH Swift-exception", "copyrightText": "NOASSERTION", "primaryPackagePurpose": "LIBRARY",
        "description": "the Swift runtime, standard library, libdispatch and BlocksRuntime, linked statically",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": f"pkg:generic/swift@{args.swift}"}],
    }]
    for name, package, licence, description in linked:
        version = debian_version(package)
        packages.append({
            "name": name, "SPDXID": f"SPDXRef-Package-{name.replace('+', 'p')}", "versionInfo": version,
            "supplier": "Organization: Debian", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "licenseConcluded": licence, "licenseDeclared": licence, "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY", "description": f"{description} (Debian package {package})",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl_deb(package, version)}],
        })
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Package-grpc-init"}]
    relationships += [{"spdxElementId": "SPDXRef-Package-grpc-init", "relationshipType": "STATIC_LINK", "relatedSpdxElement": p["SPDXID"]}
                      for p in packages[1:]]
    document = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": f"grpc-init-{args.version}",
        "documentNamespace": f"https://spdx.org/spdxdocs/grpc-init-{args.version}-{args.revision}",
        "creationInfo": {"created": CREATED, "creators": ["Tool: grpc-init-release"]},
        "packages": packages, "relationships": relationships,
    }
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def tar_bytes(entries):
    """A tar of (name, data or symlink target, mode, is_link) entries, sorted, owned by root, at EPOCH."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content, mode, link in sorted(entries):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = EPOCH, 0, 0, "", "", mode
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def image(args, binary):
    """An OCI image layout in a tar: FROM scratch, /grpc-init and /bin/grpc_health_probe."""
    layer = tar_bytes([("bin", None, 0o755, False), ("bin/grpc_health_probe", "/grpc-init", 0o777, True),
                       ("grpc-init", binary, 0o755, False)])
    labels = {
        "org.opencontainers.image.title": "grpc-init", "org.opencontainers.image.description": DESCRIPTION,
        "org.opencontainers.image.version": args.version, "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.source": args.source, "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": CREATED,
    }
    config = json.dumps({
        "created": CREATED, "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/grpc-init", "--"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(layer)]},
        "history": [{"created": CREATED, "created_by": "scripts/release.sh"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + sha256(layer), "size": len(layer)}],
        "annotations": labels,
    }, sort_keys=True, separators=(",", ":")).encode()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sha256(manifest),
                       "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
                       # ref.name is a tag, as the image-layout spec has it (skopeo's oci-archive:FILE:TAG);
                       # containerd and podman name the image by io.containerd.image.name.
                       "annotations": {"org.opencontainers.image.ref.name": args.tag,
                                       "io.containerd.image.name": f"{REPOSITORY}:{args.tag}"}}],
    }, sort_keys=True, separators=(",", ":")).encode()
    blobs = [(f"blobs/sha256/{sha256(b)}", b, 0o644, False) for b in (layer, config, manifest)]
    return tar_bytes([("blobs", None, 0o755, False), ("blobs/sha256", None, 0o755, False),
                      ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644, False), ("index.json", index, 0o644, False)] + blobs)


def main():
    parser = argparse.ArgumentParser()
    for option in ("binary", "version", "tag", "revision", "source", "swift", "sbom", "image"):
        parser.add_argument("--" + option, required=True)
    args = parser.parse_args()
    with open(args.binary, "rb") as f:
        binary = f.read()
    with open(args.sbom, "wb") as f:
        f.write(sbom(args, binary))
    with open(args.image, "wb") as f:
        f.write(image(args, binary))


if __name__ == "__main__":
    main()
