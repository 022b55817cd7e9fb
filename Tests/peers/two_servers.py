"""A child tree with two grpc-go servers (a main port and an admin port): starts the first, and
the second once the first has said READY, each with -control. Lines on stdin go to one of them:
"<index> SET <service|-> <STATUS>" sets a status, "<index> EXIT" stops that server (SIGTERM) and
waits for it. A status of NO_HEALTH starts that server without the health service. Each
server's stdout is this process's (READY, SET lines). Exits when its stdin
closes or on SIGTERM, after stopping both.

usage: two_servers.py GOSERVER FIRST_ADDR FIRST_STATUS SECOND_ADDR SECOND_STATUS"""
import signal
import subprocess
import sys
import threading


def relay(stream):
    for line in stream:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


def main():
    goserver, first, first_status, second, second_status = sys.argv[1:6]
    servers = []

    def stop(*_):
        for s in servers:
            if s.poll() is None:
                s.terminate()
        for s in servers:
            try:
                s.wait(timeout=10)
            except subprocess.TimeoutExpired:
                s.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    for addr, status in [(first, first_status), (second, second_status)]:
        health = ["-no-health"] if status == "NO_HEALTH" else ["-status", status, "-control"]
        server = subprocess.Popen([goserver, "-addr", addr, *health], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        servers.append(server)
        # Its READY line is passed on once it listens; the next server starts after it.
        line = server.stdout.readline()
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        if not line.startswith(b"READY "):
            stop()
    for server in servers:
        threading.Thread(target=relay, args=(server.stdout,), daemon=True).start()
    for line in sys.stdin:
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit() or int(fields[0]) >= len(servers):
            continue
        server = servers[int(fields[0])]
        if fields[1] == "EXIT":
            server.terminate()
            server.wait(timeout=10)
            print(f"EXITED {fields[0]}", flush=True)
        elif server.poll() is None:
            server.stdin.write((" ".join(fields[1:]) + "\n").encode())
            server.stdin.flush()
    stop()


if __name__ == "__main__":
    main()
