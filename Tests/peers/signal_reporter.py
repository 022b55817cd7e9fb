"""A child for the supervisor tests: reports on stdout every signal it receives ("GOT n"),
after printing "READY <pid> <pgid>". Exits with 0 on SIGUSR2 after reporting it... never:
the tests end it with SIGKILL or by closing its stdin."""
import os
import signal
import sys
import threading

received = []


def handler(signo, _frame):
    sys.stdout.write(f"GOT {signo}\n")
    sys.stdout.flush()


for signo in range(1, signal.SIGRTMAX + 1):
    if signo in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, 32, 33):
        continue
    try:
        signal.signal(signo, handler)
    except (OSError, ValueError):
        pass

print(f"READY {os.getpid()} {os.getpgrp()}", flush=True)
# Leave when stdin closes (the test ends), otherwise wait for signals.
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
while True:
    signal.pause()
