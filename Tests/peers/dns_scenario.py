"""Runs inside `unshare --net --mount`: a private loopback where a fake DNS server can own port
53, a resolv.conf bind-mounted over /etc/resolv.conf, and a grpc-go server. Probes names that
only this DNS server knows and prints "RESULT <name> <exit> <stderr>" for each.

Usage: dns_scenario.py PROBE GOSERVER"""
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

probe, goserver = sys.argv[1], sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
RECORDS = {"svc.prod.test.": ("A", "127.0.0.1"), "v6only.prod.test.": ("AAAA", "::1"),
           "multi.prod.test.": ("A+AAAA", ("127.0.0.2", "::1")),
           "alias.prod.test.": ("CNAME", "svc.prod.test.")}
queries = []


def name_at(data, i):
    labels = []
    while data[i]:
        labels.append(data[i + 1:i + 1 + data[i]].decode())
        i += data[i] + 1
    return ".".join(labels) + ".", i + 1


def encode(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"


def answer(query):
    qname, end = name_at(query, 12)
    qtype = struct.unpack(">H", query[end:end + 2])[0]
    queries.append((qname, qtype))
    records = []
    name = qname
    while name in RECORDS:
        kind, value = RECORDS[name]
        if kind == "CNAME":
            records.append(encode(name) + struct.pack(">HHIH", 5, 1, 60, len(encode(value))) + encode(value))
            name = value
            continue
        if kind == "A+AAAA":
            v4, v6 = value
            if qtype == 1:
                records.append(encode(name) + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_pton(socket.AF_INET, v4))
            if qtype == 28:
                records.append(encode(name) + struct.pack(">HHIH", 28, 1, 60, 16) + socket.inet_pton(socket.AF_INET6, v6))
            break
        if (kind, qtype) == ("A", 1):
            records.append(encode(name) + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_pton(socket.AF_INET, value))
        if (kind, qtype) == ("AAAA", 28):
            records.append(encode(name) + struct.pack(">HHIH", 28, 1, 60, 16) + socket.inet_pton(socket.AF_INET6, value))
        break
    known = qname in RECORDS
    flags = 0x8180 if known else 0x8183  # NXDOMAIN for names it does not know
    header = query[:2] + struct.pack(">HHHHH", flags, 1, len(records), 0, 0)
    return header + query[12:end + 4] + b"".join(records)


dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.1", 53))
threading.Thread(target=lambda: [dns.sendto(answer(d), a) for d, a in iter(lambda: dns.recvfrom(512), None)], daemon=True).start()

conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
conf.write("nameserver 127.0.0.1\nsearch other.test prod.test\noptions ndots:2 timeout:1 attempts:1\n")
conf.close()
subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)

server = subprocess.Popen([goserver, "-network", "tcp", "-addr", "[::]:0"], stdout=subprocess.PIPE, text=True)
port = server.stdout.readline().strip().rsplit(":", 1)[1]
def run(name, port, prefix=()):
    start = time.monotonic()
    out = subprocess.run([*prefix, probe, "-addr", f"{name}:{port}", "-connect-timeout", "3s"], capture_output=True, text=True,
                         timeout=30)
    print("RESULT", name, out.returncode, f"{time.monotonic() - start:.3f}", out.stderr.strip(), flush=True)


for name in ["svc", "alias", "v6only", "svc.prod.test", "missing"]:
    run(name, port)
# Every address is tried in order: 127.0.0.2 refuses (the server listens on ::1 only), ::1 answers.
# strace records the order of the connects to the server's port.
v6server = subprocess.Popen([goserver, "-network", "tcp6", "-addr", "[::1]:0"], stdout=subprocess.PIPE, text=True)
v6port = v6server.stdout.readline().strip().rsplit(":", 1)[1]
trace = tempfile.NamedTemporaryFile(suffix=".trace", delete=False)
run("multi", v6port, prefix=["strace", "-f", "-e", "trace=connect", "-o", trace.name])
connects = [m.group(1) or m.group(2) for line in open(trace.name) if f"htons({v6port})" in line
            for m in [re.search(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"', line)] if m]
print("CONNECTS", " ".join(connects), flush=True)
v6server.kill()
print("QUERIES", " ".join(f"{n}/{t}" for n, t in queries), flush=True)
server.kill()
