import Client
import Flags
import GateProtocol
import HPACK
import SystemCalls
import Wire

/// What the health endpoint answers: `/readyz` and `/livez` over HTTP/1.1 and HTTP/2, gRPC
/// Health Check and Watch over h2c, each from a fresh Check of the child (a Watch relayed), and
/// a small answer with a body for anything else.
extension HealthEndpoint {
    // MARK: Requests

    /// What a request for /readyz or /livez gets, over either transport: an answer now, or a
    /// Check of the child to wait for (without a handle when there is no channel).
    enum HealthRequest {
        case now(status: Int, body: String, extra: String)
        case check(Pending)
    }

    func healthRequest(method: String, path: String, parameter: (String) -> String?, stream: UInt32?) -> HealthRequest {
        let head = method == "HEAD"
        let kind: Kind
        switch path {
        case "/readyz": kind = .readyz
        case "/livez": kind = .livez
        default: return .now(status: 404, body: "not found", extra: "")
        }
        guard method == "GET" || head else { return .now(status: 405, body: "method not allowed", extra: "Allow: GET, HEAD\r\n") }
        var timeout = limits.defaultTimeout
        if let text = parameter("timeout") {
            guard let parsed = try? GoDuration.parse(text), parsed.nanoseconds > 0 else { return .now(status: 400, body: "invalid timeout", extra: "") }
            timeout = min(parsed.nanoseconds, limits.maxTimeout)
        }
        onProbe()
        let service = parameter("service")
        let verbose = parameter("verbose") != nil
        var checked = service ?? ""
        if case .readyz = kind {
            // Readiness is the health model's: what is not ready is said at once, with why
            // (every configured service, or the one named). What is ready is confirmed by a
            // Check, so that a hung server fails readiness as it would an exec probe. A service
            // the model does not watch is asked directly.
            let watched = service.map { model.services.contains($0) } ?? true
            if draining { return .now(status: 503, body: readyzBody("draining", verbose: verbose), extra: "") }
            if watched, let why = model.reason(service: service) {
                return .now(status: 503, body: readyzBody(why.description, verbose: verbose), extra: "")
            }
            checked = service ?? model.services[0]
        }
        let handle = channel?.start(path: Health.checkPath, metadata: metadata, request: Health.request(service: checked), timeout: timeout)
        return .check(Pending(kind: kind, stream: stream, headOnly: head, verbose: verbose, handle: handle))
    }

    /// `/readyz`'s body: the status or the reason; with `?verbose`, each configured service on a
    /// line of its own first, as kube-apiserver lists its checks ("[+]db SERVING").
    func readyzBody(_ text: String, verbose: Bool, passed: Bool = false) -> String {
        guard verbose else { return text }
        // Each part escaped on its own: a peer's text cannot add lines of its own.
        let lines = model.lines.map { escapingControlCharacters("[\($0.serving ? "+" : "-")]\(serviceLabel($0.service)) \($0.status)") }
        return (lines + [escapingControlCharacters(passed ? "readyz check passed" : "readyz check failed: \(text)")]).joined(separator: "\n")
    }

    /// A body's lines, each with its control characters escaped.
    func oneLinePerLine(_ body: String) -> String {
        body.split(separator: "\n", omittingEmptySubsequences: false).map { escapingControlCharacters(String($0)) }.joined(separator: "\n")
    }

    /// A complete HTTP/2 request: /readyz and /livez as over HTTP/1.1, gRPC Health, and a small
    /// answer with a body for anything else (so that a client can test flow control on it).
    func answer(_ request: Arriving, stream: UInt32, on peer: Peer, _ connection: HTTP2Connection) {
        func value(_ name: String) -> String? { request.fields.first { $0.name == name }?.value }
        let method = value(":method") ?? ""
        guard case .success(let (path, query)) = HTTP1Request.target(Array((value(":path") ?? "").utf8)) else {
            return respond(connection, stream, status: 400, body: "malformed path or query", head: false)
        }
        if method == "POST", value("content-type")?.hasPrefix("application/grpc") == true {
            return handleGRPC(stream: stream, path: path, fields: request.fields, body: request.body, on: peer, connection)
        }
        if path == Health.checkPath || path == Health.watchPath {
            return respond(connection, stream, status: 415, body: "a gRPC method: POST with content-type application/grpc", head: method == "HEAD")
        }
        switch healthRequest(method: method, path: path, parameter: { name in query.first { $0.0 == name }?.1 }, stream: stream) {
        case .now(let status, let body, _):
            respond(connection, stream, status: status, body: body, head: method == "HEAD")
        case .check(let pending):
            peer.pending.append(pending)
            if pending.handle == nil { answerWithoutChild(peer, peer.pending.count - 1) }
        }
    }

    // MARK: Answers over HTTP/1.1 and HTTP/2

    static let reasonPhrases = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 415: "Unsupported Media Type",
                                        431: "Request Header Fields Too Large", 503: "Service Unavailable", 505: "HTTP Version Not Supported"]

    func respond(_ peer: Peer, status: Int, body: String, head: Bool, extra: String = "") {
        let line = oneLinePerLine(body) + "\n"
        var response = "HTTP/1.1 \(status) \(HealthEndpoint.reasonPhrases[status] ?? "Error")\r\nContent-Type: text/plain; charset=utf-8\r\n"
        response += "Content-Length: \(line.utf8.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\(extra)\r\n"
        if !head { response += line }
        peer.outbound.append(contentsOf: response.utf8)
        peer.closeWhenFlushed = true
        peer.pending = []
    }

    func respond(_ connection: HTTP2Connection, _ stream: UInt32, status: Int, body: String, head: Bool) {
        let line = Array((oneLinePerLine(body) + "\n").utf8)
        connection.sendHeaders(streamID: stream, [HeaderField(":status", String(status)), HeaderField("content-type", "text/plain; charset=utf-8"),
                                                  HeaderField("content-length", String(line.count)), HeaderField("cache-control", "no-store")],
                               endStream: head)
        if !head { connection.sendData(streamID: stream, line, endStream: true) }
    }

    /// The status and text for a finished Check of /readyz or /livez.
    func healthAnswer(_ entry: Pending, _ status: GRPCStatus, _ message: [UInt8]?) -> (Int, String) {
        if case .readyz = entry.kind {
            if status.code == .ok, let serving = message.flatMap({ try? Health.decodeResponse($0) }) {
                return (serving == .serving ? 200 : 503, readyzBody(serving.description, verbose: entry.verbose, passed: serving == .serving))
            }
            return (503, readyzBody(status.fromServer ? status.description : status.message, verbose: entry.verbose))
        }
        // Any answer from the child's health service is alive; no answer in time is not,
        // whether our deadline or the child's own (sent as grpc-timeout) said so first.
        if status.code == .ok || (status.fromServer && status.code != .deadlineExceeded) {
            return (200, status.code == .ok ? (message.flatMap { try? Health.decodeResponse($0) }?.description ?? "OK") : status.description)
        }
        return (503, status.message)
    }

    // MARK: gRPC over h2c

    func handleGRPC(stream: UInt32, path: String, fields: [HeaderField], body: [UInt8], on peer: Peer, _ connection: HTTP2Connection) {
        let watch = path == Health.watchPath
        guard path == Health.checkPath || watch else {
            trailersOnly(connection, stream, GRPCStatus(.unimplemented, "unknown method \(path)"))
            return
        }
        // One uncompressed message: a HealthCheckRequest.
        guard body.count >= 5, body[0] == 0, Int(readLength(body)) == body.count - 5,
              let service = try? Health.decodeRequest(Array(body[5...])) else {
            trailersOnly(connection, stream, GRPCStatus(.internalError, "a request that is not one uncompressed HealthCheckRequest"))
            return
        }
        var timeout = limits.defaultTimeout
        if let text = fields.first(where: { $0.name == "grpc-timeout" })?.value, let parsed = decodeGRPCTimeout(text) {
            timeout = min(parsed, limits.maxTimeout)
        }
        connection.sendHeaders(streamID: stream, [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")], endStream: false)
        if watch {
            guard peer.pending.filter({ if case .watch = $0.kind { return true } else { return false } }).count < limits.maxWatches else {
                trailers(connection, stream, GRPCStatus(.resourceExhausted, "too many watches"))
                return
            }
            if draining {
                peer.pending.append(Pending(kind: .watch, stream: stream))
                connection.sendData(streamID: stream, grpcMessage(Health.response(.notServing)), endStream: false)
                return
            }
            guard let channel else {
                trailers(connection, stream, GRPCStatus(.unavailable, reason))
                return
            }
            peer.pending.append(Pending(kind: .watch, stream: stream,
                                        handle: channel.start(path: Health.watchPath, metadata: metadata, request: Health.request(service: service),
                                                              serverStreaming: true, timeout: nil)))
            return
        }
        if draining {
            connection.sendData(streamID: stream, grpcMessage(Health.response(.notServing)), endStream: false)
            trailers(connection, stream, GRPCStatus(.ok))
            return
        }
        guard let channel else {
            trailers(connection, stream, GRPCStatus(.unavailable, reason))
            return
        }
        peer.pending.append(Pending(kind: .check, stream: stream,
                                    handle: channel.start(path: Health.checkPath, metadata: metadata,
                                                          request: Health.request(service: service), timeout: timeout)))
    }

    func readLength(_ body: [UInt8]) -> UInt32 {
        UInt32(body[1]) << 24 | UInt32(body[2]) << 16 | UInt32(body[3]) << 8 | UInt32(body[4])
    }

    func grpcMessage(_ message: [UInt8]) -> [UInt8] {
        let n = UInt32(message.count)
        return [0, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + message
    }

    func trailers(_ connection: HTTP2Connection, _ stream: UInt32, _ status: GRPCStatus) {
        var fields = [HeaderField("grpc-status", String(status.rawCode))]
        if !status.message.isEmpty { fields.append(HeaderField("grpc-message", percentEncoded(escapingControlCharacters(status.message)))) }
        connection.sendHeaders(streamID: stream, fields, endStream: true)
    }

    func trailersOnly(_ connection: HTTP2Connection, _ stream: UInt32, _ status: GRPCStatus) {
        var fields = [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc"),
                      HeaderField("grpc-status", String(status.rawCode))]
        if !status.message.isEmpty { fields.append(HeaderField("grpc-message", percentEncoded(escapingControlCharacters(status.message)))) }
        connection.sendHeaders(streamID: stream, fields, endStream: true)
    }

    /// grpc-message's encoding: printable ASCII except '%' as is, the rest %XX.
    func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// Answers what finished on the channel.
    func progress(_ peer: Peer) {
        switch peer.speaks {
        case .undecided:
            return
        case .http1:
            guard let first = peer.pending.first, let handle = first.handle, let status = handle.status else { return }
            let (code, text) = healthAnswer(first, status, handle.nextMessage())
            respond(peer, status: code, body: text, head: first.headOnly)
        case .http2(let connection):
            var index = 0
            while index < peer.pending.count {
                let entry = peer.pending[index]
                guard let handle = entry.handle, let stream = entry.stream else {
                    index += 1
                    continue
                }
                switch entry.kind {
                case .readyz, .livez:
                    guard let status = handle.status else { break }
                    let (code, text) = healthAnswer(entry, status, handle.nextMessage())
                    respond(connection, stream, status: code, body: text, head: entry.headOnly)
                    peer.pending.remove(at: index)
                    continue
                case .check:
                    guard let status = handle.status else { break }
                    if status.code == .ok, let message = handle.nextMessage() {
                        connection.sendData(streamID: stream, grpcMessage(message), endStream: false)
                        trailers(connection, stream, GRPCStatus(.ok))
                    } else if status.fromServer {
                        trailers(connection, stream, status)
                    } else {
                        trailers(connection, stream, GRPCStatus(status.code == .deadlineExceeded ? .deadlineExceeded : .unavailable, status.message))
                    }
                    peer.pending.remove(at: index)
                    continue
                case .watch:
                    while let message = handle.nextMessage() {
                        connection.sendData(streamID: stream, grpcMessage(message), endStream: false)
                    }
                    if let status = handle.status {
                        trailers(connection, stream, status.fromServer ? status : GRPCStatus(.unavailable, status.message))
                        peer.pending.remove(at: index)
                        continue
                    }
                }
                index += 1
            }
            pull(connection, into: peer)
        }
    }

    /// What to answer when there is no channel to the child: why, at once.
    func answerWithoutChild(_ peer: Peer, _ index: Int) {
        let why = reason
        let entry = peer.pending[index]
        switch peer.speaks {
        case .http1:
            respond(peer, status: 503, body: why, head: entry.headOnly)
        case .http2(let connection):
            if let stream = entry.stream {
                switch entry.kind {
                case .readyz, .livez: respond(connection, stream, status: 503, body: why, head: entry.headOnly)
                case .check, .watch: trailers(connection, stream, GRPCStatus(.unavailable, why))
                }
            }
            peer.pending.remove(at: index)
            pull(connection, into: peer)
        case .undecided:
            break
        }
    }
}
