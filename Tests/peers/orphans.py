"""A child for the supervisor tests: makes N orphans (double fork), then waits until none of the
processes its parent (grpc-init) adopted is left a zombie. Prints "ZOMBIES n" and exits 0 when
none remain within the bound, 1 otherwise."""
import os
import sys
import time

count = int(sys.argv[1])
supervisor = os.getppid()
for _ in range(count):
    parent_alive, parent_holds = os.pipe()
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            # Exit only once orphaned: EOF comes when the intermediate process has exited.
            os.close(parent_holds)
            os.read(parent_alive, 1)
            os._exit(0)
        os._exit(0)
    os.close(parent_alive)
    os.close(parent_holds)
    os.waitpid(pid, 0)


def zombies():
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == supervisor:
            found += 1
    return found


deadline = time.monotonic() + 10
while (n := zombies()) and time.monotonic() < deadline:
    time.sleep(0.01)
print(f"ZOMBIES {n}", flush=True)
sys.exit(0 if n == 0 else 1)
