"""A grpcio server with grpc.health.v1.Health's Check, Watch and List (gRFC A90) of its own,
protobuf written by hand, so that a test decides what List answers: services added, changed and
removed on stdin, more than List may answer, names with any characters.

--services is a JSON list of [name, STATUS] pairs. Each line on stdin is a JSON command:
["SET", name, STATUS], ["REMOVE", name] or ["DELAY", seconds] (Check and List answer that much
later). Prints "READY <port>" once it listens, "LIST" for each List (with --no-list too, which
answers it UNIMPLEMENTED as a server without List), and each command (as JSON) once applied.
"""
import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc

STATUSES = {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}
MAX_LISTED = 100


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def response(status):
    return b"\x08" + varint(status) if status else b""


def service_of(request):
    """HealthCheckRequest's service (field 1); the rest of the message is not looked at."""
    i = 0
    while i < len(request):
        tag = request[i]
        i += 1
        length, shift = 0, 0
        while True:
            byte = request[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if tag == 0x0A:
            return request[i:i + length].decode()
        i += length
    return ""


class Health:
    def __init__(self, services, lists=True):
        self.statuses = dict(services)
        self.lists = lists
        self.delay = 0.0
        self.changed = threading.Condition()
        self.version = 0

    def check(self, request, context):
        service = service_of(request)
        time.sleep(self.delay)
        with self.changed:
            if service not in self.statuses:
                context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
            return response(self.statuses[service])

    def watch(self, request, context):
        service = service_of(request)
        last = None
        while context.is_active():
            with self.changed:
                status = self.statuses.get(service, STATUSES["SERVICE_UNKNOWN"])
                version = self.version
            if status != last:
                last = status
                yield response(status)
            with self.changed:
                self.changed.wait_for(lambda: self.version != version, timeout=1.0)

    def list(self, request, context):
        print("LIST", flush=True)
        if not self.lists:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method List for service grpc.health.v1.Health")
        time.sleep(self.delay)
        with self.changed:
            if len(self.statuses) > MAX_LISTED:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server health list exceeds maximum capacity: {MAX_LISTED}")
            return b"".join(field(1, field(1, name.encode()) + field(2, response(status)))
                            for name, status in sorted(self.statuses.items()))

    def apply(self, command):
        with self.changed:
            if command[0] == "SET":
                self.statuses[command[1]] = STATUSES[command[2]]
            elif command[0] == "REMOVE":
                self.statuses.pop(command[1], None)
            elif command[0] == "DELAY":
                self.delay = float(command[1])
            self.version += 1
            self.changed.notify_all()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--services", default="[]", help='JSON: [["name", "STATUS"], ...]')
    p.add_argument("--many", type=int, default=0, help="this many more services, SERVING")
    p.add_argument("--no-list", action="store_true", help="answer List UNIMPLEMENTED")
    args = p.parse_args()
    services = [(name, STATUSES[status]) for name, status in json.loads(args.services)]
    services += [(f"svc{i}", 1) for i in range(args.many)]
    health = Health(services, lists=not args.no_list)
    identity = lambda b: b
    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(health.check, request_deserializer=identity, response_serializer=identity),
        "Watch": grpc.unary_stream_rpc_method_handler(health.watch, request_deserializer=identity, response_serializer=identity),
        "List": grpc.unary_unary_rpc_method_handler(health.list, request_deserializer=identity, response_serializer=identity),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(args.listen)
    server.start()
    print(f"READY {port}", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        health.apply(command)
        print(json.dumps(command), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
