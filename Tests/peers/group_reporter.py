"""A child for the supervisor tests: it and another process it starts in its own process group
report each signal they get on stdout ("GOT child N", "GOT other N"). Prints
"READY <pid> <other pid>" once both listen; ends on SIGTERM (and ends the other)."""
import os
import signal
import sys

ready_read, ready_write = os.pipe()
other = os.fork()
role = "other" if other == 0 else "child"


def report(signo, _frame):
    os.write(1, f"GOT {role} {signo}\n".encode())


for signo in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
    signal.signal(signo, report)
if other == 0:
    os.write(ready_write, b"x")
    while True:
        signal.pause()
signal.signal(signal.SIGTERM, lambda *_: (os.kill(other, signal.SIGKILL), os._exit(0)))
os.read(ready_read, 1)
print(f"READY {os.getpid()} {other}", flush=True)
while True:
    signal.pause()
