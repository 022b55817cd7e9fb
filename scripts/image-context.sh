#!/usr/bin/env bash
# Makes the build context of docker/Dockerfile.release in DIR: the release binary (stripped),
# its grpc_health_probe symlink and SERVER.
# Usage: scripts/image-context.sh DIR SERVER     (after swift build -c release)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR SERVER" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
server=$2
mkdir -p "$dir/bin"
strip -o "$dir/grpc-init" "$root/.build/release/grpc-init"
ln -sfn /grpc-init "$dir/bin/grpc_health_probe"
cp "$server" "$dir/server"
