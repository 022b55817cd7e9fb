"""A grpcio health server, used as a real peer by the integration tests.

Prints "READY <port-or-path>" once it listens, and "HEADER name=value" / "SERVICE name" for each
Check when --echo-headers is given.
"""
import argparse
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class SlowHealth(health.HealthServicer):
    def __init__(self, delay, echo):
        super().__init__()
        self._delay = delay
        self._echo = echo

    def Check(self, request, context):
        if self._echo:
            for key, value in context.invocation_metadata():
                print(f"HEADER {key}={value}", flush=True)
            print(f"SERVICE {request.service!r}", flush=True)
        if self._delay:
            time.sleep(self._delay)
        return super().Check(request, context)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port, or unix:PATH")
    p.add_argument("--status", default="SERVING")
    p.add_argument("--services", default="", help="comma-separated name=STATUS")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--no-health", action="store_true")
    p.add_argument("--echo-headers", action="store_true")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-client-ca")
    p.add_argument("--serving-after", type=float, default=None,
                   help="answer NOT_SERVING for the empty service name this many seconds, then SERVING "
                        "(printing \"SERVING NOW <time.time()>\")")
    p.add_argument("--control", action="store_true",
                   help='read "SET <service|-> <STATUS>" lines on stdin (as the grpc-go peer\'s -control)')
    args = p.parse_args()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    if not args.no_health:
        servicer = SlowHealth(args.delay, args.echo_headers)
        initial = "NOT_SERVING" if args.serving_after is not None else args.status
        servicer.set("", health_pb2.HealthCheckResponse.ServingStatus.Value(initial))
        for pair in filter(None, args.services.split(",")):
            name, status = pair.split("=", 1)
            servicer.set(name, health_pb2.HealthCheckResponse.ServingStatus.Value(status))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if args.tls_cert:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
        client_ca = None
        if args.tls_client_ca:
            with open(args.tls_client_ca, "rb") as f:
                client_ca = f.read()
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                            require_client_auth=client_ca is not None)
        port = server.add_secure_port(args.listen, creds)
    else:
        port = server.add_insecure_port(args.listen)
    server.start()
    print(f"READY {args.listen if args.listen.startswith('unix') else port}", flush=True)
    if args.serving_after is not None and not args.no_health:
        time.sleep(args.serving_after)
        servicer.set("", health_pb2.HealthCheckResponse.ServingStatus.Value("SERVING"))
        print(f"SERVING NOW {time.time()}", flush=True)
    if args.control and not args.no_health:
        for line in sys.stdin:
            words = line.split()
            if len(words) == 3 and words[0] == "SET":
                servicer.set("" if words[1] == "-" else words[1], health_pb2.HealthCheckResponse.ServingStatus.Value(words[2]))
                print(f"SET {words[1]} {words[2]}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
