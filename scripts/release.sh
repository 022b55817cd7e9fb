#!/usr/bin/env bash
# The release files of this commit, into DIR:
#   grpc-init-VERSION-linux-amd64.tar.gz   the stripped static binary, its grpc_health_probe
#                                           symlink, LICENSE, the licences of what it links, a README
#   grpc-init-VERSION.spdx.json            SPDX 2.3 SBOM: grpc-init and every component linked in,
#                                           with the versions Debian's packages and the toolchain give
#   grpc-init-VERSION.oci.tar              an OCI image archive FROM scratch: /grpc-init and
#                                           /bin/grpc_health_probe, org.opencontainers.image.* labels,
#                                           imported as docker.io/library/grpc-init:TAG
#   checksums.txt                          sha256 of each, in `sha256sum -c` format
# VERSION is scripts/version.sh's, the version the binary says (-version), and TAG the same with
# '+' as '_'; the script refuses to build when they would differ or the tag at HEAD is not
# VERSION's. Two runs from the same commit give byte-identical files: times are the commit's
# (SOURCE_DATE_EPOCH), owners and modes fixed, tar entries sorted, gzip without a name or time.
# Usage: scripts/release.sh DIR     (GRPC_INIT_SOURCE sets the image's source label; default: the
#                                    git remote "origin")
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: scripts/release.sh DIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
scripts/version.sh --check
version=$(scripts/version.sh)
tag=$(scripts/version.sh --oci-tag)
revision=$(git rev-parse HEAD)
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
source=${GRPC_INIT_SOURCE:-$(git config --get remote.origin.url || echo unknown)}

swift build -c release >/dev/null
built=$(.build/release/grpc-init -version)
[ "$built" = "grpc-init $version" ] || {
    echo "release.sh: the binary says \"$built\" but the release would be grpc-init $version (did the tree change during the build?)" >&2
    exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The tarball.
name=grpc-init-$version-linux-amd64
root=$work/$name
mkdir -p "$root/licenses"
strip -o "$root/grpc-init" .build/release/grpc-init
ln -s grpc-init "$root/grpc_health_probe"
cp LICENSE "$root/LICENSE"
cp /usr/share/doc/libssl-dev/copyright "$root/licenses/openssl.txt"
cp /usr/share/doc/zlib1g/copyright "$root/licenses/zlib.txt"
cp /usr/share/doc/libc6-dev/copyright "$root/licenses/glibc.txt"
cp /usr/share/doc/libstdc++-12-dev/copyright "$root/licenses/libstdc++.txt"
swift_root=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
cp "$swift_root/share/swift/LICENSE.txt" "$root/licenses/swift.txt"
cat > "$root/README" <<EOF
grpc-init $version (linux/amd64, revision $revision)

A static init process for a gRPC server's container (signals, zombies, exit status, a readiness
gate and health endpoint with no configuration) and a drop-in grpc_health_probe.

  ENTRYPOINT ["/grpc-init", "--"]               supervise and gate the server given as CMD
  grpc_health_probe -addr=localhost:50051       the probe (this symlink, or grpc-init grpc_health_probe)
  grpc-init -version -v                         the version and what the binary links

LICENSE is grpc-init's (Apache-2.0); licenses/ holds the licences of what the binary links.
EOF
chmod 0755 "$root" "$root/licenses" "$root/grpc-init"
chmod 0644 "$root/LICENSE" "$root/README" "$root"/licenses/*
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --format=gnu \
    -C "$work" -cf - "$name" | gzip -n -9 > "$out/$name.tar.gz"

# The SBOM and the image.
python3 scripts/release-files.py --binary "$root/grpc-init" --version "$version" --revision "$revision" \
    --source "$source" --swift "$(swift --version 2>&1 | sed -n 's/.*(swift-\([^)]*\)-RELEASE).*/\1/p' | head -1)" \
    --tag "$tag" --sbom "$out/grpc-init-$version.spdx.json" --image "$out/grpc-init-$version.oci.tar"

(cd "$out" && sha256sum "$name.tar.gz" "grpc-init-$version.spdx.json" "grpc-init-$version.oci.tar" > checksums.txt)
echo "$out: grpc-init $version"
