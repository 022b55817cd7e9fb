"""A SPIFFE Workload API server (the X.509 profile of an agent such as SPIRE's) on grpcio, for
-spiffe. It serves FetchX509SVID on a unix socket: one X509SVIDResponse built from PEM files,
then holds the stream open as an agent does. workload.proto's messages are written by hand (a
few length-delimited fields). Prints "READY <socket path>", then "CALL <security header>" for
each call. READY gives the SPIFFE_ENDPOINT_SOCKET value.

--mode serve (default), deny (PERMISSION_DENIED, an agent with no identity for the caller),
stall (never answers), empty (a response with no SVIDs, the stream then held open), empty-first
(a response with no SVIDs, then the real one), empty-end (a response with no SVIDs, then the
end of the stream). With --rotate-to CERT,KEY, a line "ROTATE" on stdin sends every open stream
a response with that SVID (the same ID, a new certificate), as an agent rotating SVIDs does, and
prints "ROTATED <streams>".
"""
import argparse
import re
import ssl
import subprocess
import sys
import threading
from concurrent import futures

import grpc


def field(number, payload):
    """A length-delimited protobuf field."""
    key = (number << 3) | 2
    out = bytearray()
    for value in (key, len(payload)):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def pem_certificates_der(path):
    text = open(path).read()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return b"".join(ssl.PEM_cert_to_DER_cert(b) for b in blocks)


def pkcs8_der(path):
    return subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", path],
                          capture_output=True, check=True, timeout=30).stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True, help="a unix socket path, or tcp:127.0.0.1:0 for TCP")
    p.add_argument("--spiffe-id", required=True)
    p.add_argument("--svid", required=True, help="PEM certificate chain, leaf first")
    p.add_argument("--key", required=True, help="PEM private key")
    p.add_argument("--bundle", required=True, help="PEM roots of the SVID's trust domain")
    p.add_argument("--federated", action="append", default=[], help="KEY=PEM roots of another trust domain")
    p.add_argument("--extra-svid", action="append", default=[],
                   help="ID,CERT,KEY,BUNDLE: another SVID after the first, with its trust domain's roots")
    p.add_argument("--rotate-to", help="CERT,KEY: the SVID sent on every open stream when stdin says ROTATE")
    p.add_argument("--mode", default="serve", choices=["serve", "deny", "stall", "empty", "empty-first", "empty-end"])
    args = p.parse_args()

    def svid(spiffe_id, cert, key, bundle):
        return field(1, field(1, spiffe_id.encode()) + field(2, pem_certificates_der(cert))
                     + field(3, pkcs8_der(key)) + field(4, pem_certificates_der(bundle)))

    response = svid(args.spiffe_id, args.svid, args.key, args.bundle)
    for extra in args.extra_svid:
        response += svid(*extra.split(","))
    for pair in args.federated:
        key, path = pair.split("=", 1)
        response += field(3, field(1, key.encode()) + field(2, pem_certificates_der(path)))
    answers = {"empty": [b""], "empty-first": [b"", response], "empty-end": [b""]}.get(args.mode, [response])
    rotation = threading.Condition()
    state = {"generation": 0, "streams": 0}
    if args.rotate_to:
        cert, key = args.rotate_to.split(",")
        rotated = svid(args.spiffe_id, cert, key, args.bundle)

        def read_commands():
            for line in sys.stdin:
                if line.strip() == "ROTATE":
                    with rotation:
                        state["generation"] += 1
                        rotation.notify_all()
                        streams = state["streams"]
                    print(f"ROTATED {streams}", flush=True)
        threading.Thread(target=read_commands, daemon=True).start()

    def fetch(request, context):
        header = dict(context.invocation_metadata()).get("workload.spiffe.io", "-")
        print(f"CALL {header}", flush=True)
        if header != "true":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")
        if args.mode == "deny":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
        if args.mode == "stall":
            answers.clear()
        for answer in answers:
            yield answer
        if args.mode == "empty-end":
            return
        # As an agent: the stream stays open for updates until the client goes.
        done = threading.Event()

        def gone():
            done.set()
            with rotation:
                rotation.notify_all()
        context.add_callback(gone)
        with rotation:
            seen = state["generation"]
            state["streams"] += 1
        try:
            while not done.is_set():
                with rotation:
                    rotation.wait_for(lambda: done.is_set() or state["generation"] != seen, timeout=60)
                    if done.is_set() or state["generation"] == seen:
                        return
                    seen = state["generation"]
                yield rotated
        finally:
            with rotation:
                state["streams"] -= 1

    handler = grpc.method_handlers_generic_handler("SpiffeWorkloadAPI", {
        "FetchX509SVID": grpc.unary_stream_rpc_method_handler(
            fetch, request_deserializer=lambda b: b, response_serializer=lambda b: b),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    if args.socket.startswith("tcp:"):
        port = server.add_insecure_port(args.socket[len("tcp:"):])
        where = f"tcp://127.0.0.1:{port}"
    else:
        server.add_insecure_port(f"unix:{args.socket}")
        where = f"unix://{args.socket}"
    server.start()
    print(f"READY {where}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
