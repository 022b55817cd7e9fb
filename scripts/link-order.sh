#!/usr/bin/env bash
# Regenerates Sources/grpc-init/link-order.txt: the functions a probe and the supervisor run,
# in the order they first run, recorded with callgrind. lld lays them out side by side
# (--symbol-ordering-file), so a probe faults in a few hundred KiB of code instead of pages
# scattered over megabytes. Run after changes to the probe's path; a stale list only costs memory.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
scripts/install-deps.sh >/dev/null
swift build -c release >/dev/null
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
ln -s "$PWD/.build/release/grpc-init" "$work/grpc_health_probe"
.build/peers/goserver -addr 127.0.0.1:0 -services svc=NOT_SERVING > "$work/server.out" &
server=$!
until grep -q READY "$work/server.out"; do sleep 0.01; done
port=$(sed -n 's/READY .*://p' "$work/server.out")
runs=(
    "$work/grpc_health_probe -addr 127.0.0.1:$port"
    "$work/grpc_health_probe -addr localhost:$port -v -rpc-header a:b -service svc"
    "$work/grpc_health_probe -addr :$port -gzip"
    "$work/grpc_health_probe -addr 127.0.0.1:1"
    "$work/grpc_health_probe -version"
    "$PWD/.build/release/grpc-init -- true"
    "$PWD/.build/release/grpc-init -v -- sh -c exit"
)
i=0
for run in "${runs[@]}"; do
    i=$((i + 1))
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$i" $run >/dev/null 2>&1 || true
done
for i in $(seq 1 ${#runs[@]}); do
    grep -E '^c?fn=\([0-9]+\) ' "$work/cg.$i" | sed -E 's/^c?fn=\([0-9]+\) //'
done | awk '!seen[$0]++' > Sources/grpc-init/link-order.txt
echo "$(wc -l < Sources/grpc-init/link-order.txt) functions in Sources/grpc-init/link-order.txt"
rm -f .build/release/grpc-init "$(readlink -f .build/release)/grpc-init"  # SwiftPM does not see the list as a link input
swift build -c release >/dev/null
