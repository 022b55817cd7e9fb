"""Another container of the pod at grpc-init's local probe socket: run it in a PID namespace of
its own that shares the network namespace, where the socket's abstract name lives.

  squat NAME   binds @NAME first and answers every query SERVING, as if it were the agent
  flood NAME   connects to @NAME in a loop and lets go at once, to keep the backlog full

Prints READY once it is at work (flood: after its first thousand tries)."""
import socket
import sys

# A LocalAnswer frame: version 1, kind 33, SERVING, no server named, no service lines.
SERVING = bytes([1, 33, 0, 4, 0, 0, 0, 0])


def squat(address):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    print("READY", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(4096)
                conn.sendall(SERVING)
            except OSError:
                pass


def flood(address):
    tries = 0
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            s.connect(address)
        except OSError:
            pass  # a full backlog (EAGAIN): try again at once
        s.close()
        tries += 1
        if tries == 1000:
            print("READY", flush=True)


if __name__ == "__main__":
    mode, name = sys.argv[1], sys.argv[2]
    {"squat": squat, "flood": flood}[mode]("\0" + name)
