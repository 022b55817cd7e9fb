#!/usr/bin/env bash
# The long, coverage-guided fuzzing pass (libFuzzer with AddressSanitizer), outside SwiftPM:
#   conversation  whole HTTP/2 conversations, both roles, an adversary between them, invariants
#                 checked after every step (Tests/fuzz/Conversation.swift)
#   wire          a peer's bytes into HPACK, a client with calls in flight, the server role,
#                 protobuf, gzip and HTTP/1.1 heads (Tests/fuzz/entry/WireFuzz.swift)
#   pem           PEM bundles into TLSShim's base64 decoder and DER walker (Tests/fuzz/c)
#   maps          /proc/self/maps text into CShim's code-range parser (Tests/fuzz/c)
#   gate          the supervisor-agent protocol's frames, both directions (Tests/fuzz/entry/GateFuzz.swift)
#   stop-sequence not libFuzzer: the supervisor's stop sequence, every ordering of events explored
#                 breadth first to GRPC_INIT_EXPLORE_DEPTH (default 10; the suite goes to 7), each
#                 state against the invariants (Tests/SupervisorTests/StopSequenceTests.swift)
# Seeds come from Tests/fuzz/corpus/TARGET; what libFuzzer finds goes to .build/fuzz/corpus-TARGET,
# crash inputs to .build/fuzz. The test suite runs the short pass (FuzzTests, test_fuzz.py).
# Usage: scripts/fuzz.sh [SECONDS [TARGET...]]   (default 300 seconds, shared by every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(conversation wire pem maps gate stop-sequence)
out=.build/fuzz
mkdir -p "$out"
root=$PWD

# The sans-IO modules, compiled once with the fuzzer's instrumentation: Wire reads the health
# verdict's values from GateProtocol, which reads Flags.
build_swift() {
    [ -x "$out/wire.o" ] && [ -z "$(find Sources/Flags Sources/GateProtocol Sources/HPACK Sources/Wire -newer "$out/wire.o" -name '*.swift')" ] && return
    local flags=(-sanitize=fuzzer,address -parse-as-library -O -wmo -I "$out")
    swiftc "${flags[@]}" -module-name Flags -emit-module -emit-module-path "$out/Flags.swiftmodule" \
        -c Sources/Flags/*.swift -o "$out/flags.o"
    swiftc "${flags[@]}" -module-name GateProtocol -emit-module -emit-module-path "$out/GateProtocol.swiftmodule" \
        -c Sources/GateProtocol/*.swift -o "$out/gate.o"
    swiftc "${flags[@]}" -module-name HPACK -emit-module -emit-module-path "$out/HPACK.swiftmodule" \
        -c Sources/HPACK/*.swift -o "$out/hpack.o"
    swiftc "${flags[@]}" -module-name Wire -I Sources/CZlib -emit-module -emit-module-path "$out/Wire.swiftmodule" \
        -c Sources/Wire/*.swift -o "$out/wire.o"
}
sans_io=("$out/flags.o" "$out/gate.o" "$out/hpack.o" "$out/wire.o")

build() {
    local flags=(-sanitize=fuzzer,address -parse-as-library -O -wmo -I "$out" -I Sources/CZlib)
    case "$1" in
    conversation)
        build_swift
        swiftc "${flags[@]}" Tests/fuzz/Conversation.swift Tests/fuzz/entry/ConversationFuzz.swift "${sans_io[@]}" -lz \
            -o "$out/conversation-fuzz" 2>&1 | grep -v "Cannot export" || true ;;
    wire)
        build_swift
        swiftc "${flags[@]}" Tests/fuzz/entry/WireFuzz.swift "${sans_io[@]}" -lz -o "$out/wire-fuzz" \
            2>&1 | grep -v "Cannot export" || true ;;
    pem)
        clang -g -O1 -fsanitize=fuzzer,address -fuse-ld=lld -I Sources/TLSShim/include Tests/fuzz/c/pem_bundle_fuzz.c \
            Sources/TLSShim/shim.c Sources/TLSShim/provider.c -lssl -lcrypto -o "$out/pem-fuzz" ;;
    gate)
        build_swift
        swiftc "${flags[@]}" Tests/fuzz/entry/GateFuzz.swift "$out/flags.o" "$out/gate.o" -o "$out/gate-fuzz" \
            2>&1 | grep -v "Cannot export" || true ;;
    maps)
        clang -g -O1 -fsanitize=fuzzer,address -fuse-ld=lld -I Sources/CShim/include Tests/fuzz/c/proc_maps_fuzz.c \
            Sources/CShim/cshim.c -o "$out/maps-fuzz" ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
    esac
}

each=$(( seconds / ${#targets[@]} ))
[ "$each" -gt 0 ] || each=1
for target in "${targets[@]}"; do
    if [ "$target" = stop-sequence ]; then
        echo "== stop-sequence: depth ${GRPC_INIT_EXPLORE_DEPTH:=10}"
        GRPC_INIT_EXPLORE_DEPTH=$GRPC_INIT_EXPLORE_DEPTH swift test --filter StopSequenceExplorationTests 2>&1 | grep -E "stop sequence|error|Executed"
        continue
    fi
    build "$target"
    mkdir -p "$out/corpus-$target"
    seeds=Tests/fuzz/corpus/$target
    [ -d "$seeds" ] || seeds=
    echo "== $target: $each s"
    (cd "$out" && "./$target-fuzz" -max_total_time="$each" -max_len=4096 -print_final_stats=1 -artifact_prefix="$root/$out/$target-" \
        "corpus-$target" ${seeds:+"$root/$seeds"})
done
