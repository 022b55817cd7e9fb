"""A plain HTTP/2 server (h2c, prior knowledge) with no gRPC in it: every request on every stream,
on every connection, is answered :status 404 with a text body, as a web server's h2c port
answers a path it does not serve. Prints "READY <port>"; --port picks the port (0: any)."""
import argparse
import socket
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions

BODY = b"404 page not found\n"


def serve(conn):
    h2conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    h2conn.initiate_connection()
    try:
        conn.sendall(h2conn.data_to_send())
        while True:
            data = conn.recv(65536)
            if not data:
                return
            for event in h2conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.RequestReceived):
                    h2conn.send_headers(event.stream_id, [(":status", "404"), ("content-type", "text/plain; charset=utf-8"),
                                                          ("content-length", str(len(BODY)))])
                    h2conn.send_data(event.stream_id, BODY, end_stream=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    conn.sendall(h2conn.data_to_send())
                    return
            conn.sendall(h2conn.data_to_send())
    except (OSError, h2.exceptions.H2Error):
        pass
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(16)
    print(f"READY {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
