#!/usr/bin/env bash
# Fuzzes what a peer's bytes reach (HPACK, HTTP/2 frames and the gRPC call layer, protobuf,
# gzip, and the health endpoint's HTTP/2 server side and HTTP/1.1 parser) with libFuzzer and AddressSanitizer, outside SwiftPM: the modules are compiled with
# -sanitize=fuzzer,address around Tests/fuzz/WireFuzz.swift. Not part of scripts/test.sh.
# Usage: scripts/fuzz.sh [SECONDS]   (default 300; crash inputs are left in .build/fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
out=.build/fuzz
mkdir -p "$out/corpus"
flags=(-sanitize=fuzzer,address -parse-as-library -O -wmo)
swiftc "${flags[@]}" -module-name HPACK -emit-module -emit-module-path "$out/HPACK.swiftmodule" \
    -c Sources/HPACK/*.swift -o "$out/hpack.o"
swiftc "${flags[@]}" -module-name Wire -I "$out" -I Sources/CZlib -emit-module -emit-module-path "$out/Wire.swiftmodule" \
    -c Sources/Wire/*.swift -o "$out/wire.o"
swiftc "${flags[@]}" -I "$out" -I Sources/CZlib Tests/fuzz/WireFuzz.swift "$out/hpack.o" "$out/wire.o" -lz -o "$out/wire-fuzz" \
    2>&1 | grep -v "Cannot export" || true
[ -n "$(ls -A "$out/corpus")" ] || printf '\001\000' > "$out/corpus/seed"
cd "$out"
exec ./wire-fuzz -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 corpus
