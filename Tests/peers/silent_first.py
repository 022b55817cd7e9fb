"""A child whose first listeners say nothing: each one listens on loopback and never accepts
(the kernel completes the handshake, nothing answers), then, `--after` seconds later, the real
server starts. Prints "SILENT PORT" per silent listener, then passes the server's output on.
Runs until killed; the server dies with it (SIGTERM is forwarded)."""
import argparse
import signal
import socket
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--silent", type=int, default=1, help="silent listeners before the server")
    parser.add_argument("--after", type=float, default=1.0)
    parser.add_argument("server", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    held = []
    for _ in range(args.silent):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        held.append(s)
        print(f"SILENT {s.getsockname()[1]}", flush=True)
    time.sleep(args.after)
    server = subprocess.Popen(args.server[1:] if args.server[:1] == ["--"] else args.server)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    sys.exit(server.wait())


main()
