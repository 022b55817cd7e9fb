"""A child for the supervisor tests: reports on stdout every signal it receives ("GOT n"),
after printing "READY <pid> <pgid>". Ends when its stdin closes (the tests close it, or kill it).

Signals are read from a wakeup pipe (the C-level handler writes each signal's number there),
not awaited with pause(): a signal arriving between a handler's return and the next pause()
would otherwise wait, unreported, for the one after it."""
import os
import signal
import sys
import threading

# Our stderr is the supervisor's, which a test may have closed: a write there would raise a
# SIGPIPE of our own, indistinguishable from one the supervisor forwarded.
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)

wakeup_read, wakeup_write = os.pipe()
os.set_blocking(wakeup_write, False)
signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
for signo in range(1, signal.SIGRTMAX + 1):
    if signo in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, 32, 33):
        continue
    try:
        signal.signal(signo, lambda *_: None)  # caught (not the default action): reported below
    except (OSError, ValueError):
        pass

# The stdin reader is started with every signal blocked (a thread inherits its creator's mask),
# so that signals reach the main thread.
everything = signal.valid_signals()
signal.pthread_sigmask(signal.SIG_BLOCK, everything)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
signal.pthread_sigmask(signal.SIG_UNBLOCK, everything)

print(f"READY {os.getpid()} {os.getpgrp()}", flush=True)
while True:
    for signo in os.read(wakeup_read, 256):
        sys.stdout.write(f"GOT {signo}\n")
    sys.stdout.flush()
