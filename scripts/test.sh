#!/usr/bin/env bash
# Runs every test: unit tests (swift test) and the integration suite against real gRPC peers,
# after installing what they need. Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
# The build without OpenSSL (the TLS trait off), for the test of that variant.
swift build -c release --disable-default-traits --scratch-path .build-notls
swift test
.venv/bin/python -m pytest Tests/integration -q
