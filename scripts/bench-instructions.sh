#!/usr/bin/env bash
# Instructions per probe, as callgrind counts them (repeatable, unlike times): a plaintext
# probe, the same built without TLS, and a TLS probe, each against a local grpc-go server.
# Usage: scripts/bench-instructions.sh     (after scripts/install-deps.sh and both release builds;
#        BENCH_BASELINE=BINARY adds its plaintext and TLS rows, in the same run)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
work=$(mktemp -d)
trap 'kill $server $tls_server 2>/dev/null || true; rm -rf "$work"' EXIT
.build/peers/goserver -addr 127.0.0.1:0 > "$work/server.out" &
server=$!
.venv/bin/python -c "import sys; sys.path.insert(0, 'Tests/integration'); from pathlib import Path; from pki import PKI; PKI(Path('$work/pki'))"
.build/peers/goserver -addr 127.0.0.1:0 -tls-cert "$work/pki/server-ecdsa.pem" -tls-key "$work/pki/server-ecdsa.key" > "$work/tls.out" &
tls_server=$!
for _ in $(seq 1 2000); do grep -q READY "$work/server.out" && grep -q READY "$work/tls.out" && break; sleep 0.01; done
port=$(sed -n 's/READY .*://p' "$work/server.out")
tls_port=$(sed -n 's/READY .*://p' "$work/tls.out")
count() {  # NAME BINARY ARGS...: user-space instructions of one probe
    local name=$1 binary=$2
    shift 2
    # valgrind's DWARF reader gives up on this binary's debug info; the symbol table is enough.
    mkdir -p "$work/$name"
    strip -g -o "$work/$name/grpc-init" "$binary"
    ln -sf grpc-init "$work/$name/grpc_health_probe"
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$work/$name/grpc_health_probe" "$@" >/dev/null 2>&1
    printf '%-40s %12s\n' "$name" "$(sed -n 's/^summary: //p' "$work/$name.cg")"
}
printf '%-40s %12s\n' "probe" "instructions"
count plaintext .build/release/grpc-init -addr "127.0.0.1:$port"
[ -x .build-notls/release/grpc-init ] && count plaintext-without-tls .build-notls/release/grpc-init -addr "127.0.0.1:$port"
count tls-ecdsa .build/release/grpc-init -addr "localhost:$tls_port" -tls -tls-ca-cert "$work/pki/root.pem"
if [ -n "${BENCH_BASELINE:-}" ]; then
    count baseline-plaintext "$BENCH_BASELINE" -addr "127.0.0.1:$port"
    count baseline-tls-ecdsa "$BENCH_BASELINE" -addr "localhost:$tls_port" -tls -tls-ca-cert "$work/pki/root.pem"
fi
