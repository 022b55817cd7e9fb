#!/usr/bin/env bash
# Regenerates scripts/link-order.txt (and link-order-notls.txt, the same less OpenSSL's names,
# for the build without TLS): the functions a probe and the supervisor run, in the order they
# first run (valgrind's lackey traces each run), then the data they use. lld lays them out side
# by side (--symbol-ordering-file), so a probe faults in a few hundred KiB of code instead of pages
# scattered over megabytes. Run after changes to the probe's path; a stale list only costs memory.
# lld places whole input sections, and some hot functions share a section with cold code, so a new
# list is not always better: compare peak RSS before and after with scripts/bench-probe.py as root
# (it drops the page cache first, as a fresh image would have it) and keep the better list, or
# the old list with the new list's functions appended (`scripts/link-order.sh --append`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
scripts/install-deps.sh >/dev/null
swift build -c release >/dev/null
work=$(mktemp -d)
trap 'kill $server $tls_server $gated 2>/dev/null || true; rm -rf "$work"' EXIT
# valgrind's DWARF reader gives up on this binary's debug info; lackey gives addresses, and the
# symbol table names them.
strip -g -o "$work/grpc-init" .build/release/grpc-init
ln -s "$work/grpc-init" "$work/grpc_health_probe"
.build/peers/goserver -addr 127.0.0.1:0 -services svc=NOT_SERVING > "$work/server.out" &
server=$!
tls_server=
gated=
await_ready() {  # a server's READY line, within 20 s
    for _ in $(seq 1 2000); do grep -q READY "$1" && return 0; sleep 0.01; done
    echo "server did not start: $1" >&2; exit 1
}
await_ready "$work/server.out"
port=$(sed -n 's/READY .*://p' "$work/server.out")
.venv/bin/python -c "import sys; sys.path.insert(0, 'Tests/integration'); from pathlib import Path; from pki import PKI; PKI(Path('$work/pki'))"
pki=$work/pki
.build/peers/goserver -addr 127.0.0.1:0 -tls-cert "$pki/server-ecdsa.pem" -tls-key "$pki/server-ecdsa.key" > "$work/tls.out" &
tls_server=$!
await_ready "$work/tls.out"
tls_port=$(sed -n 's/READY .*://p' "$work/tls.out")
# A server under grpc-init, for the probe with no -addr, which asks grpc-init's agent.
"$work/grpc-init" -- .build/peers/goserver -addr 127.0.0.1:0 > "$work/gated.out" 2> "$work/gated.err" &
gated=$!
for _ in $(seq 1 2000); do grep -q "ready: " "$work/gated.err" && break; sleep 0.01; done
runs=(
    "$work/grpc_health_probe -addr 127.0.0.1:$port"
    "$work/grpc_health_probe"
    "$work/grpc_health_probe -addr localhost:$port -v -rpc-header a:b -service svc"
    "$work/grpc_health_probe -addr :$port -gzip"
    "$work/grpc_health_probe -addr 127.0.0.1:1"
    "$work/grpc_health_probe -version"
    "$work/grpc_health_probe -addr localhost:$tls_port -tls -tls-ca-cert $pki/root.pem"
    "$work/grpc_health_probe -addr localhost:$tls_port -tls -tls-no-verify -v"
    # The supervisor without its agent: the agent is a process of its own, and its functions
    # must not be placed among the probe's.
    "$work/grpc-init -ready=false -- true"
    "$work/grpc-init -ready=false -v -- sh -c exit"
)
# Each run's code in the order it first runs, as code that runs together is best placed together
# (callgrind's output names functions in no such order): lackey names each superblock as it runs
# it, and the function holding its address is listed the first time one of its blocks runs.
# --vex-guest-chase=no: a superblock would otherwise follow calls and jumps into other functions,
# which would then go unnamed.
i=0
for run in "${runs[@]}"; do
    i=$((i + 1))
    { valgrind --tool=lackey --vex-guest-chase=no --trace-superblocks=yes --log-fd=9 $run 9>&1 >/dev/null 2>/dev/null || true; } \
        | awk '$1 == "SB" && !seen[$2]++ {print $2}' > "$work/sb.$i"
done
nm -n -S --defined-only "$work/grpc-init" > "$work/symbols"
.venv/bin/python - "$work" ${#runs[@]} > "$work/order" <<'EOF'
import bisect, sys
work, runs = sys.argv[1], int(sys.argv[2])
functions = []  # (start, end, name) of the code symbols, by address
for line in open(f"{work}/symbols"):
    fields = line.split()
    if len(fields) == 4 and fields[2] in "tTwWiI":
        start = int(fields[0], 16)
        functions.append((start, start + max(int(fields[1], 16), 1), fields[3]))
starts = [f[0] for f in functions]
for i in range(1, runs + 1):
    for line in open(f"{work}/sb.{i}"):
        address = int(line, 16)
        j = bisect.bisect_right(starts, address) - 1
        # the symbol that holds the address: the last one to start at or before it, or one
        # that starts before that and is longer
        while j >= 0 and not address < functions[j][1] and address - functions[j][0] < 1 << 20:
            j -= 1
        if j >= 0 and functions[j][0] <= address < functions[j][1]:
            print(functions[j][2])
EOF
# glibc picks string-function variants (AVX2, EVEX, AVX-512) for the CPU it runs on; valgrind's
# emulated CPU may make it pick others. List every variant, so the real CPU's are placed too.
nm .build/release/grpc-init | awk '$3 ~ /^__(mem|str|stp|wmem|wcs|raw)[a-z0-9]*_(sse|avx|evex|erms)/ {print $3}' >> "$work/order"
# With --append, the current list stays as it is and only functions it lacks are added at its end.
if [ "${1:-}" = "--append" ]; then
    cat scripts/link-order.txt "$work/order" | awk '!seen[$0]++' > "$work/merged"
    mv "$work/merged" "$work/order"
fi
# Then the data of our modules and of the standard library (type metadata, descriptors, witness
# tables): grouped, the few pages of it a probe touches are fewer, as fault-around maps whole
# windows around each.
nm .build/release/grpc-init | awk '$2 ~ /^[dDrRbB]$/ && $3 ~ /^\$s(6Client|4Wire|9Transport|5Probe|5HPACK|11SystemCalls|5Flags|6SPIFFE|10Addressing)/ {print $3}' >> "$work/order"
nm .build/release/grpc-init | awk '$2 ~ /^[dDrR]$/ && $3 ~ /^\$ss/ {print $3}' >> "$work/order"
# The C library's start-up (and its ifunc resolvers), which every process runs before main, go
# first.
{
    printf '%s\n' _start __libc_start_main_impl __libc_start_call_main _dl_aux_init __tunables_init __init_misc \
        __libc_setup_tls _dl_relocate_static_pie __libc_init_secure _dl_non_dynamic_init __libc_init_first \
        __tls_pre_init_tp _dl_early_allocate _dl_init_paths getenv __sbrk sbrk __brk malloc \
        __pthread_mutex_lock __pthread_mutex_unlock
    nm .build/release/grpc-init | awk '$3 ~ /_ifunc$/ {print $3}'
    cat "$work/order"
} | awk '!seen[$0]++' > "$work/list"
# Only names the binary has: names that are gone (kept by --append from an older list) would each
# be a warning of lld's, and test_the_link_order_names_only_what_the_binary_has checks that none
# is left.
nm --defined-only .build/release/grpc-init | awk '{print $3}' | sort -u > "$work/defined"
awk -v defined="$work/defined" 'BEGIN { while ((getline line < defined) > 0) have[line] = 1 } ($0 in have)' \
    "$work/list" > scripts/link-order.txt
echo "$(wc -l < scripts/link-order.txt) symbols in scripts/link-order.txt"
# The build without TLS links in the same order, less the names it lacks by design (OpenSSL's).
swift build -c release --disable-default-traits --scratch-path .build-notls >/dev/null
nm --defined-only .build-notls/release/grpc-init | awk '{print $3}' | sort -u > "$work/defined-notls"
awk -v defined="$work/defined-notls" 'BEGIN { while ((getline line < defined) > 0) have[line] = 1 } ($0 in have)' \
    scripts/link-order.txt > scripts/link-order-notls.txt
echo "$(wc -l < scripts/link-order-notls.txt) symbols in scripts/link-order-notls.txt"
rm -f .build-notls/release/grpc-init "$(readlink -f .build-notls/release)/grpc-init"
swift build -c release --disable-default-traits --scratch-path .build-notls >/dev/null
rm -f .build/release/grpc-init "$(readlink -f .build/release)/grpc-init"  # SwiftPM does not see the list as a link input
swift build -c release >/dev/null
