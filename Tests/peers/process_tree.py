"""A child of many processes that serves nothing: `--silent` sockets listen on loopback and
never accept (the kernel completes handshakes, nothing answers), then the process forks until
the tree has `--processes` processes, each holding the listeners (as a prefork pool's workers
do). Prints "READY" once every process runs; on SIGTERM the processes end together."""
import argparse
import os
import signal
import socket
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=100, help="processes in the tree, this one included")
    parser.add_argument("--silent", type=int, default=0, help="silent listeners, held by every process")
    args = parser.parse_args()
    held = []
    for _ in range(args.silent):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        held.append(s)
    workers = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            while True:
                signal.pause()
        workers.append(pid)

    def stop(*_):
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"READY {len(workers) + 1}", flush=True)
    while True:
        signal.pause()


main()
