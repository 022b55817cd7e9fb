#!/usr/bin/env python3
"""Per-probe cost on loopback: median wall time, CPU time (user+system) and peak RSS of one
probe process, measured with wait4(2) over many runs against a local grpc-go server.

Peak RSS depends on what the page cache holds of the binary: the kernel maps up to 64 KiB of
cached pages around each page a process faults in. Each row is measured in two states, each set
up for that row alone (as root):
- "cold": the page cache dropped, then 10 discarded runs; it then holds what probes (and the
  server) read, as on a node where the binary was pulled long ago and its pages evicted since;
- "cached": the whole binary read first, as right after it was copied or its image pulled.
Wall and CPU times are those of the cached runs.

Usage: scripts/bench-probe.py [RUNS]     (after scripts/install-deps.sh --bench and a release build;
       BENCH_BASELINE=BINARY adds rows for another grpc-init binary, measured in the same run)
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 300


def launcher():
    """Builds the small C launcher that spawns and measures each probe (Tests/peers/measure), static,
    so that its own start costs little."""
    out = ROOT / ".build" / "bench" / "measure"
    source = ROOT / "Tests" / "peers" / "measure" / "measure.c"
    if not out.exists() or source.stat().st_mtime > out.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-static", "-o", str(out), str(source)], check=True)
    return out


def drop_page_cache():
    """Drops the page cache (as root): only what is read afterwards is cached."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cache_whole(path):
    """Reads the whole file, so that the page cache holds all of it."""
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def measure(argv, runs, env=None):
    warmup = 10
    out = subprocess.run([str(launcher()), "-n", str(runs + warmup), *argv], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **(env or {})))
    rows = [list(map(int, line.split())) for line in out.stdout.splitlines()][warmup:]
    if any(r[3] != 0 for r in rows):
        raise SystemExit(f"{argv} failed in some runs")
    return (statistics.median(r[0] for r in rows) / 1000, statistics.median(r[1] for r in rows) / 1000,
            statistics.median(r[2] for r in rows) / 1024)


def measure_both(argv, runs, env=None):
    """(wall ms, CPU ms, peak RSS MiB cold, peak RSS MiB cached) for one row."""
    binary = os.path.realpath(argv[0])
    cold = measure(argv, runs, env)[2] if drop_page_cache() else float("nan")
    cache_whole(binary)
    wall, cpu, cached = measure(argv, runs, env)
    return wall, cpu, cold, cached


def for_scale(work):
    """An empty static C program and a static Swift "hello", built here: what any process costs."""
    c, swift = work / "empty.c", work / "hello.swift"
    c.write_text("int main(void) { return 0; }\n")
    swift.write_text('import Glibc\nfputs("hello\\n", stderr)\n')  # stderr: the launcher reads stdout
    subprocess.run(["cc", "-O2", "-static", "-o", str(work / "empty"), str(c)], check=True)
    subprocess.run(["swiftc", "-O", "-static-executable", "-o", str(work / "hello"), str(swift)], check=True, capture_output=True)
    return [("for scale: an empty static C program", [str(work / "empty")], None),
            ("for scale: a static Swift \"hello\"", [str(work / "hello")], None)]


def start_server(*args):
    server = subprocess.Popen([str(ROOT / ".build/peers/goserver"), "-addr", "127.0.0.1:0", *args], stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().split(":")[-1].strip()


def main():
    binary = ROOT / ".build" / "release" / "grpc-init"
    work = Path(tempfile.mkdtemp())
    sys.path.insert(0, str(ROOT / "Tests" / "integration"))
    from pki import PKI
    pki = PKI(work / "pki")
    server, port = start_server()
    tls_server, tls_port = start_server("-tls-cert", str(pki.server_ecdsa[0]), "-tls-key", str(pki.server_ecdsa[1]))
    rsa_server, rsa_port = start_server("-tls-cert", str(pki.server_rsa[0]), "-tls-key", str(pki.server_rsa[1]))
    leaf_server, leaf_port = start_server("-tls-cert", str(pki.server_ecdsa_leaf_only[0]), "-tls-key",
                                          str(pki.server_ecdsa_leaf_only[1]))
    # The system roots as a Debian image has them, with the test root and intermediate added to
    # the bundle; the server sends only its leaf, so both are looked up among ~140 roots.
    system_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = work / "bundle.pem"
    bundle.write_text((system_bundle.read_text() if system_bundle.exists() else "")
                      + (pki.dir / "intermediate.pem").read_text() + pki.ca.read_text())
    spiffe_server, spiffe_port = start_server("-tls-cert", str(pki.spiffe_server[0]), "-tls-key", str(pki.spiffe_server[1]),
                                              "-tls-client-ca", str(pki.spiffe_ca))
    # A Workload API (the test peer, on grpcio) handing out the probe's SVID.
    agent_socket = work / "agent.sock"
    agent = subprocess.Popen([str(ROOT / ".venv/bin/python"), str(ROOT / "Tests/peers/workloadapi.py"), "--socket", str(agent_socket),
                              "--spiffe-id", "spiffe://example.org/probe", "--svid", str(pki.spiffe_probe[0]),
                              "--key", str(pki.spiffe_probe[1]), "--bundle", str(pki.spiffe_ca)], stdout=subprocess.PIPE, text=True)
    agent.stdout.readline()
    mtls_server, mtls_port = start_server("-tls-cert", str(pki.server_ecdsa[0]), "-tls-key", str(pki.server_ecdsa[1]),
                                          "-tls-client-ca", str(pki.ca))
    # A TLS server under grpc-init, found with no flags: the probe with no -addr asks its agent.
    gated = subprocess.Popen([str(binary), "--", str(ROOT / ".build/peers/goserver"), "-addr", "127.0.0.1:0",
                              "-tls-cert", str(pki.server_ecdsa[0]), "-tls-key", str(pki.server_ecdsa[1])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gated_port = gated.stdout.readline().split(":")[-1].strip()
    while not gated.stderr.readline().startswith("[grpc-init] ready: "):
        pass
    (work / "grpc_health_probe").symlink_to(binary)
    probe = str(work / "grpc_health_probe")
    rows = [("grpc-init, plaintext", [probe, "-addr", f"127.0.0.1:{port}"], None)]
    notls = ROOT / ".build-notls" / "release" / "grpc-init"
    if notls.exists():
        (work / "notls").mkdir()
        (work / "notls" / "grpc_health_probe").symlink_to(notls)
        rows.append(("  the same, built without TLS", [str(work / "notls" / "grpc_health_probe"), "-addr", f"127.0.0.1:{port}"], None))
    rows += [
        ("grpc-init, TLS (ECDSA P-256, TLS 1.3)", [probe, "-addr", f"localhost:{tls_port}", "-tls", "-tls-ca-cert", str(pki.ca)], None),
        ("grpc-init, no -addr (a TLS server under grpc-init: its agent is asked)", [probe], None),
        ("  the same server, -addr -tls -tls-ca-cert", [probe, "-addr", f"localhost:{gated_port}", "-tls", "-tls-ca-cert", str(pki.ca)],
         None),
        ("grpc-init, TLS (RSA 2048 server)", [probe, "-addr", f"localhost:{rsa_port}", "-tls", "-tls-ca-cert", str(pki.ca)], None),
        ("grpc-init, mTLS (ECDSA both sides)", [probe, "-addr", f"localhost:{mtls_port}", "-tls", "-tls-ca-cert", str(pki.ca),
                                                "-tls-client-cert", str(pki.client_ec_sec1[0]),
                                                "-tls-client-key", str(pki.client_ec_sec1[1])], None),
        ("grpc-init, -spiffe (Workload API SVID)", [probe, "-addr", f"localhost:{spiffe_port}", "-spiffe"],
         {"SPIFFE_ENDPOINT_SOCKET": f"unix://{agent_socket}"}),
        ("grpc-init, TLS, system roots", [probe, "-addr", f"localhost:{leaf_port}", "-tls"],
         {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": "/nonexistent"}),
        # The bundle is not update-ca-certificates' own here, so every file of the directory is read.
        ("  plus every file of /etc/ssl/certs", [probe, "-addr", f"localhost:{leaf_port}", "-tls"],
         {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": "/etc/ssl/certs"}),
    ]
    baseline = os.environ.get("BENCH_BASELINE")  # another grpc-init binary, for before/after rows
    if baseline:
        (work / "baseline").mkdir()
        (work / "baseline" / "grpc_health_probe").symlink_to(baseline)
        other = str(work / "baseline" / "grpc_health_probe")
        rows += [("baseline grpc-init, plaintext", [other, "-addr", f"127.0.0.1:{port}"], None),
                 ("baseline grpc-init, TLS (ECDSA P-256)", [other, "-addr", f"localhost:{tls_port}", "-tls", "-tls-ca-cert", str(pki.ca)],
                  None)]
    goprobe = ROOT / ".build/peers/goprobe"
    if goprobe.exists():
        rows.append(("grpc-go client (same Check)", [str(goprobe), "-addr", f"127.0.0.1:{port}"], None))
        rows.append(("grpc-go client, TLS (ECDSA P-256)", [str(goprobe), "-addr", f"localhost:{tls_port}", "-tls-ca-cert", str(pki.ca)],
                     None))
        rows.append(("grpc-go client, TLS, system roots", [str(goprobe), "-addr", f"localhost:{leaf_port}", "-tls"],
                     {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": "/nonexistent"}))
        rows.append(("  plus every file of /etc/ssl/certs", [str(goprobe), "-addr", f"localhost:{leaf_port}", "-tls"],
                     {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": "/etc/ssl/certs"}))
    rows += for_scale(work)
    if not drop_page_cache():
        print("(not root: the page cache cannot be dropped; the cold column is left empty)")
    try:
        print(f"{'probe':40} {'wall ms':>8} {'CPU ms':>8} {'RSS cold':>9} {'RSS cached':>11}   (MiB; medians of {RUNS} runs)")
        for name, argv, env in rows:
            wall, cpu, cold, cached = measure_both(argv, RUNS, env)
            print(f"{name:40} {wall:8.2f} {cpu:8.2f} {cold:9.2f} {cached:11.2f}", flush=True)
    finally:
        for process in (server, tls_server, rsa_server, leaf_server, mtls_server, spiffe_server, agent):
            process.kill()
        gated.terminate()
        gated.wait(timeout=15)
    for name, path in [("stripped binary", binary), ("stripped, built without TLS", ROOT / ".build-notls/release/grpc-init")]:
        if path.exists():
            stripped = work / "stripped"
            subprocess.run(["strip", "-o", str(stripped), str(path)], check=True)
            size = stripped.stat().st_size
            print(f"{name}: {size / 2**20:.2f} MiB ({size} bytes)")


if __name__ == "__main__":
    main()
