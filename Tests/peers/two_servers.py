"""A child tree with two grpc-go servers (a main port and an admin port): starts the first, and
the second once the first has said READY (with --second-once-asked, once the first has been
asked a Check: the first is being found when the second appears), each with -control. Each
server with a health service answers NOT_SERVING until both listen, then its status: whichever
answers first, both listeners are there before the tree could be ready. Lines on stdin go to one
of them:
"<index> SET <service|-> <STATUS>" sets a status, "<index> EXIT" stops that server (SIGTERM) and
waits for it. A status of NO_HEALTH starts that server without the health service. Each
server's stdout is this process's (READY, SET lines). Exits when its stdin
closes or on SIGTERM, after stopping both.

usage: two_servers.py GOSERVER FIRST_ADDR FIRST_STATUS SECOND_ADDR SECOND_STATUS [--second-once-asked]"""
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
    once_asked = "--second-once-asked" in sys.argv[6:]
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
        health = ["-no-health"] if status == "NO_HEALTH" else ["-status", "NOT_SERVING", "-control"]
        asked = once_asked and not servers and status != "NO_HEALTH"
        server = subprocess.Popen([goserver, "-addr", addr, *health, *(["-echo-headers"] if asked else [])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        servers.append(server)
        # Its READY line is passed on once it listens (and with `asked`, its first Check's
        # SERVICE line once it is asked); the next server starts after it.
        for awaited in [b"READY ", *([b"SERVICE "] if asked else [])]:
            line = server.stdout.readline()
            while line and asked and awaited == b"SERVICE " and not line.startswith(awaited):
                line = server.stdout.readline()
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            if not line.startswith(awaited):
                stop()
    for server in servers:
        threading.Thread(target=relay, args=(server.stdout,), daemon=True).start()
    for server, status in zip(servers, [first_status, second_status]):
        if status not in ("NO_HEALTH", "NOT_SERVING"):
            server.stdin.write(f"SET - {status}\n".encode())
            server.stdin.flush()
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
