"""A child for the supervisor tests: makes N orphans (double fork), each of which reports the
parent it was given once orphaned, then waits until none of the processes its parent
(grpc-init) adopted is left a zombie. Prints "ADOPTED k" (how many orphans grpc-init adopted)
and "ZOMBIES n"; exits 0 when all were adopted and none remains a zombie within the bounds,
1 otherwise."""
import os
import struct
import sys
import time

count = int(sys.argv[1])
supervisor = os.getppid()
reports_read, reports_write = os.pipe()
for _ in range(count):
    parent_alive, parent_holds = os.pipe()
    pid = os.fork()
    if pid == 0:
        intermediate = os.getpid()
        if os.fork() == 0:
            # Exit only once orphaned: EOF comes when the intermediate process has exited, and
            # the new parent is set as it finishes exiting.
            os.close(parent_holds)
            os.read(parent_alive, 1)
            deadline = time.monotonic() + 5
            while os.getppid() == intermediate and time.monotonic() < deadline:
                time.sleep(0.001)
            os.write(reports_write, struct.pack("i", os.getppid()))
            os._exit(0)
        os._exit(0)
    os.close(parent_alive)
    os.close(parent_holds)
    os.waitpid(pid, 0)
os.close(reports_write)

parents = []
deadline = time.monotonic() + 10
while len(parents) < count and time.monotonic() < deadline:
    data = os.read(reports_read, 4 * (count - len(parents)))
    if not data:
        break
    parents += [p for (p,) in struct.iter_unpack("i", data)]
adopted = sum(1 for p in parents if p == supervisor)
print(f"ADOPTED {adopted}", flush=True)


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
sys.exit(0 if n == 0 and adopted == count else 1)
