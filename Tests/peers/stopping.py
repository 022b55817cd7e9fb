"""A child for the shutdown tests: prints "READY <port>" (or "READY -"), then "SIGNAL <n> <seconds>"
for each signal it gets (the seconds of CLOCK_MONOTONIC, which the test reads too), and exits 0
--linger seconds after the first SIGTERM (or --stop-signal, a name such as SIGQUIT). With --serve it runs a grpcio health server on
127.0.0.1, SERVING until that SIGTERM, when it turns NOT_SERVING as a server shutting down
gracefully does (grpcio's enter_graceful_shutdown); without, it serves no gRPC at all.

Signals are blocked in every thread and taken with sigtimedwait in the main one, so none is
lost between two waits and none ends the process by its default action."""
import argparse
import os
import signal
import time

p = argparse.ArgumentParser()
p.add_argument("--serve", action="store_true")
p.add_argument("--linger", type=float, default=2.0)
p.add_argument("--stop-signal", default="SIGTERM")
args = p.parse_args()
STOP = signal.Signals[args.stop_signal]

CAUGHT = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}
# Before grpcio starts a thread: each thread inherits the mask, so only sigtimedwait takes them.
signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)

servicer = None
if args.serve:
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"READY {port}", flush=True)
else:
    print("READY -", flush=True)

stop_at = None
while stop_at is None or stop_at > time.monotonic():
    info = signal.sigtimedwait(CAUGHT, 3600 if stop_at is None else max(0.0, stop_at - time.monotonic()))
    if info is None:
        continue
    now = time.monotonic()
    print(f"SIGNAL {info.si_signo} {now:.6f}", flush=True)
    if info.si_signo == STOP and stop_at is None:
        stop_at = now + args.linger
        if servicer is not None:
            servicer.enter_graceful_shutdown()
os._exit(0)
