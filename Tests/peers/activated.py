"""A socket-activated child: takes the listening socket at descriptor 3 when LISTEN_FDS and
LISTEN_PID say it is its own (sd_listen_fds(3)'s rule), prints what it found, and answers each
connection with one line."""
import os
import socket
import sys

fds = int(os.environ.get("LISTEN_FDS", "0"))
mine = os.environ.get("LISTEN_PID") == str(os.getpid())
print(f"LISTEN_FDS={fds} LISTEN_PID {'is mine' if mine else 'is not mine: ' + os.environ.get('LISTEN_PID', '')}", flush=True)
if not (mine and fds == 1):
    sys.exit(3)
listener = socket.socket(fileno=3)
while True:
    conn, _ = listener.accept()
    conn.sendall(b"hello from the activated child\n")
    conn.close()
