#!/usr/bin/env bash
# Installs, only when missing, what building and testing grpc-init needs: Debian packages through
# apt-get, Python peers into .venv, and the grpc-go test server into .build/peers.
# Usage: scripts/install-deps.sh [--bench]     (--bench adds what the benchmarks compare against)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libssl-dev zlib1g-dev golang-go golang-google-grpc-dev openssl file util-linux bsdutils iproute2 gcc libc6-dev binutils podman runc
          ca-certificates strace gdb tini)
# The CRI tests (Tests/integration/test_cri.py) run a containerd of their own, on their own socket.
packages+=(containerd)
if [ "${1:-}" = "--bench" ]; then packages+=(hyperfine); fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    }
fi
# Installed again whenever the pinned versions are not all there.
.venv/bin/python -m pip freeze 2>/dev/null | sort > .venv/installed.txt || true
if [ -n "$(grep -v '^#' Tests/requirements.txt | sort | comm -23 - .venv/installed.txt)" ]; then
    .venv/bin/pip install -q -r Tests/requirements.txt
fi

# The launcher that measures a probe's peak RSS, and the signal storm of the supervisor's tests.
for peer in measure storm; do
    if [ ! -x .build/peers/$peer ] || [ Tests/peers/$peer/$peer.c -nt .build/peers/$peer ]; then
        mkdir -p .build/peers
        cc -O2 -Wall -o .build/peers/$peer Tests/peers/$peer/$peer.c
    fi
done

# The grpc-go peers, built from Debian's grpc-go in GOPATH mode: static, no module download.
for peer in goserver goprobe; do
    out=.build/peers/$peer
    if [ ! -x "$out" ] || [ "Tests/peers/$peer/main.go" -nt "$out" ]; then
        mkdir -p .build/peers .build/gopath
        (cd "Tests/peers/$peer" &&
            GO111MODULE=off GOPATH="$PWD/../../../.build/gopath:/usr/share/gocode" CGO_ENABLED=0 \
            go build -o "../../../$out" .)
    fi
done
