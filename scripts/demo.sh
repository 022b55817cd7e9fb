#!/usr/bin/env bash
# The main job, end to end: grpc-init as PID 1 (in a fresh PID namespace) supervising a real
# grpc-go server, its readiness gate finding the server's port with no flags, the
# grpc_health_probe symlink answering against it, then a SIGTERM that grpc-init forwards and
# whose exit status it passes on. Then TLS: a TLS-only grpc-go server (a certificate made here)
# gated with no flags, the probe verifying it, and the failures the probe names at once.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 2>&1  # one ordered stream: the probes print on stderr, as the reference tool does
scripts/install-deps.sh >/dev/null
swift build -c release 2>&1 | tail -n 1

work=$(mktemp -d)
tls_server=
trap 'kill "$supervisor" $tls_server 2>/dev/null || true; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM PIPE  # so that the EXIT trap runs then too
cp .build/release/grpc-init "$work/grpc-init"
"$work/grpc-init" --install "$work"
cp .build/peers/goserver "$work/server"
port=$((20000 + RANDOM % 20000))
health=$((port + 1))

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
say "grpc-init -ready-file ready -health-addr 127.0.0.1:$health -- server -addr 127.0.0.1:$port -services ready=SERVING,db=NOT_SERVING   (as PID 1; no -ready-addr: the gate finds the port)"
unshare --pid --fork --kill-child --mount-proc "$work/grpc-init" -ready-file "$work/ready" -health-addr "127.0.0.1:$health" \
    -- "$work/server" -addr "127.0.0.1:$port" -services ready=SERVING,db=NOT_SERVING >/dev/null &
supervisor=$!

# grpc-init's readiness gate says when the server serves: await its -ready-file (bounded).
for _ in $(seq 1 1000); do [ -e "$work/ready" ] && break; sleep 0.01; done
[ -e "$work/ready" ] || { echo "the server did not become ready" >&2; exit 1; }

probe() { say "grpc_health_probe $*"; "$work/grpc_health_probe" "$@" && echo "(exit 0)" || echo "(exit $?)"; }
probe -addr "localhost:$port"
probe -addr "localhost:$port" -service db
probe -addr "localhost:$port" -service nope
probe -addr "localhost:$port" -v -gzip -rpc-header "x-request-id: demo"
probe -addr "127.0.0.1:1"

# kubelet's native probes need no process in the container: the health port answers them.
get() {
    say "GET $1   (an httpGet probe to the health port)"
    exec 3<>"/dev/tcp/127.0.0.1/$health"
    printf 'GET %s HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n' "$1" >&3
    tr -d '\r' <&3 | sed -n '1p;$p'
    exec 3<&-
}
get /readyz
get "/readyz?service=db"
get /livez
probe -addr "127.0.0.1:$health"   # a grpc probe to the health port, as kubelet's native one would

say "kill -TERM <grpc-init>   (forwarded to the server; grpc-init exits with its status)"
kill -TERM "$(cat "/proc/$supervisor/task/$supervisor/children")"
status=0
wait "$supervisor" || status=$?
echo "grpc-init exited with status $status"

# TLS: a certificate chain for localhost (root, intermediate, leaf) made with the openssl command.
.venv/bin/python -c "import sys; sys.path.insert(0, 'Tests/integration'); from pathlib import Path; from pki import PKI; PKI(Path('$work/pki'))"
pki=$work/pki
say "grpc-init -ready-file tls-ready -- server -addr 127.0.0.1:0 -tls-cert server-ecdsa.pem -tls-key server-ecdsa.key   (TLS only, no gate flags)"
"$work/grpc-init" -ready-file "$work/tls-ready" -- "$work/server" -addr 127.0.0.1:0 \
    -tls-cert "$pki/server-ecdsa.pem" -tls-key "$pki/server-ecdsa.key" > "$work/tls.out" &
tls_server=$!
for _ in $(seq 1 1000); do [ -e "$work/tls-ready" ] && break; sleep 0.01; done
[ -e "$work/tls-ready" ] || { echo "the TLS server did not become ready" >&2; exit 1; }
tls_port=$(sed -n 's/READY .*://p' "$work/tls.out")
probe -addr "localhost:$tls_port" -tls -tls-ca-cert "$pki/root.pem" -v
probe -addr "127.0.0.1:$tls_port" -tls -tls-ca-cert "$pki/root.pem" -tls-server-name other.example
probe -addr "localhost:$tls_port" -tls
probe -addr "localhost:$tls_port"
# Inside grpc-init's PID namespace (here: this host's), the probe needs no flags at all: it asks
# grpc-init's health agent, which found the port and the TLS by itself.
probe
probe -v
