import Client
import Flags
import GateProtocol
import HealthServer
import HPACK
import SystemCalls
import Wire

/// What the health endpoint answers: `/readyz` and `/livez` over HTTP/1.1 and HTTP/2, gRPC
/// Health Check, Watch and List over h2c, each from a fresh Check of the child (a Watch relayed,
/// a List from the model and the servers' fresh Lists), and a small answer with a body for
/// anything else.
extension HealthEndpoint {
    // MARK: Requests

    /// What a request for /readyz or /livez gets, over either transport: an answer now, or a
    /// Check of the child to wait for (without a handle when there is no channel).
    enum HealthRequest {
        case now(status: Int, body: [String], extra: String)
        case check(Pending)
    }

    /// The question a request asks of the health server.
    static func question(_ kind: Kind, service: String?, verbose: Bool = false, listings: [ServerListing]? = nil) -> HealthQuestion {
        switch kind {
        case .readyz: return HealthQuestion(.ready, service: service, verbose: verbose, listings: listings)
        case .check: return HealthQuestion(.ready, service: service)
        case .livez: return HealthQuestion(.live, service: service)
        case .watch: return HealthQuestion(.watch, service: service)
        case .list: return HealthQuestion(.list, service: nil, listings: listings)
        }
    }

    var snapshot: HealthSnapshot { model.snapshot(connected: channel != nil) }

    /// The model as a question decides from: the servers a List may be asked of are looked up
    /// only for a question that takes Lists.
    func snapshot(for question: HealthQuestion) -> HealthSnapshot {
        var snapshot = self.snapshot
        if question.needsLists { snapshot.listable = lists.listable }
        return snapshot
    }

    /// An answer to /readyz or /livez decided without a Check; counted as answered.
    func httpNow(_ kind: Kind, _ verdict: Verdict, about: String?, verbose: Bool, listings: [ServerListing]?) -> (status: Int, body: [String]) {
        count(kind, verdict)
        return HealthServer.http(verdict, HealthEndpoint.question(kind, service: nil).kind, verbose: verbose ? snapshot.lines(listings ?? []) : nil,
                                 service: about)
    }

    func healthRequest(method: String, path: String, parameter: (String) -> String?, stream: UInt32?) -> HealthRequest {
        let head = method == "HEAD"
        let kind: Kind
        switch path {
        case "/readyz": kind = .readyz
        case "/livez": kind = .livez
        default: return .now(status: 404, body: ["not found"], extra: "")
        }
        guard method == "GET" || head else { return .now(status: 405, body: ["method not allowed"], extra: "Allow: GET, HEAD\r\n") }
        var timeout = limits.defaultTimeout
        if let text = parameter("timeout") {
            guard let parsed = try? GoDuration.parse(text), parsed.nanoseconds > 0 else { return .now(status: 400, body: ["invalid timeout"], extra: "") }
            timeout = min(parsed.nanoseconds, limits.maxTimeout)
        }
        onProbe()
        let now = MonotonicClock.now()
        let deadline = now.addingSaturated(timeout)
        let verbose = parameter("verbose") != nil
        let asked = parameter("service")
        let question = HealthEndpoint.question(kind, service: asked, verbose: verbose)
        switch HealthServer.decide(question, snapshot(for: question)) {
        case .now(let verdict, let about):
            let (status, body) = httpNow(kind, verdict, about: about, verbose: verbose, listings: nil)
            return .now(status: status, body: body, extra: "")
        case .check(let service), .watch(let service):
            let handle = channel?.start(path: Health.checkPath, metadata: metadata, request: Health.request(service: service), timeout: timeout)
            return .check(Pending(kind: kind, stream: stream, headOnly: head, verbose: verbose, handle: handle, service: service, asked: asked,
                                  deadline: deadline))
        case .list(let servers):
            let waiting = lists.wait(for: servers, until: HealthServer.listsDeadline(now: now, deadline: deadline), now: now)
            return .check(Pending(kind: kind, stream: stream, headOnly: head, verbose: verbose, asked: asked, deadline: deadline, waiting: waiting))
        }
    }

    /// Questions whose Lists ended (or whose deadline passed) are asked again with what the
    /// Lists gave: answered now, or after a Check with what is left of the question's time. A
    /// connection that closes once flushed answers nothing more: its waits are let go.
    func resumeListed(_ peer: Peer, now: Int64) {
        guard peer.awaitsLists else { return }
        defer { peer.awaitsLists = peer.pending.contains { $0.waiting != nil } }
        var index = 0
        while index < peer.pending.count {
            if peer.closeWhenFlushed {
                peer.pending.removeAll { $0.waiting != nil }
                return
            }
            guard let listings = peer.pending[index].waiting?.listings(now: now) else {
                index += 1
                continue
            }
            lists.settle()
            var entry = peer.pending[index]
            entry.waiting = nil
            entry.listings = listings
            peer.pending[index] = entry
            let question = HealthEndpoint.question(entry.kind, service: entry.asked, verbose: entry.verbose, listings: listings)
            switch HealthServer.decide(question, snapshot) {
            case .now(let verdict, let about):
                peer.pending.remove(at: index)
                switch peer.speaks {
                case .http1:
                    let (status, body) = httpNow(entry.kind, verdict, about: about, verbose: entry.verbose, listings: listings)
                    respond(peer, status: status, body: body, head: entry.headOnly)
                case .http2(let connection):
                    guard let stream = entry.stream else { continue }
                    if case .list = entry.kind {
                        grpcListAnswer(connection, stream, verdict, listings)
                    } else {
                        let (status, body) = httpNow(entry.kind, verdict, about: about, verbose: entry.verbose, listings: listings)
                        respond(connection, stream, status: status, body: body, head: entry.headOnly)
                    }
                    pull(connection, into: peer)
                case .undecided:
                    break
                }
                continue
            case .check(let service), .watch(let service):
                peer.pending[index].service = service
                peer.pending[index].handle = channel?.start(path: Health.checkPath, metadata: metadata, request: Health.request(service: service),
                                                            timeout: HealthServer.remaining(until: entry.deadline, now: now))
                if channel == nil {
                    answerWithoutChild(peer, index)
                    continue
                }
            case .list:
                // Asked again with its Lists, a question takes none.
                answerWithoutChild(peer, index)
                continue
            }
            index += 1
        }
    }

    /// A complete HTTP/2 request: /readyz and /livez as over HTTP/1.1, gRPC Health, and a small
    /// answer with a body for anything else (so that a client can test flow control on it).
    func answer(_ request: Arriving, stream: UInt32, on peer: Peer, _ connection: HTTP2Connection) {
        func value(_ name: String) -> String? { request.fields.first { $0.name == name }?.value }
        let method = value(":method") ?? ""
        guard case .success(let (path, query)) = HTTP1Request.target(Array((value(":path") ?? "").utf8)) else {
            return respond(connection, stream, status: 400, body: ["malformed path or query"], head: false)
        }
        if method == "POST", value("content-type")?.hasPrefix("application/grpc") == true {
            return handleGRPC(stream: stream, path: path, fields: request.fields, body: request.body, on: peer, connection)
        }
        if path == "/metrics" { return metrics(connection, stream, method: method, accept: value("accept")) }
        if path == Health.checkPath || path == Health.watchPath || path == Health.listPath {
            return respond(connection, stream, status: 415, body: ["a gRPC method: POST with content-type application/grpc"], head: method == "HEAD")
        }
        switch healthRequest(method: method, path: path, parameter: { name in query.first { $0.0 == name }?.1 }, stream: stream) {
        case .now(let status, let body, _):
            respond(connection, stream, status: status, body: body, head: method == "HEAD")
        case .check(let pending):
            peer.pending.append(pending)
            if pending.waiting != nil { peer.awaitsLists = true }
            if pending.handle == nil && pending.waiting == nil { answerWithoutChild(peer, peer.pending.count - 1) }
        }
    }

    // MARK: Answers over HTTP/1.1 and HTTP/2

    static let reasonPhrases = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 415: "Unsupported Media Type",
                                        431: "Request Header Fields Too Large", 503: "Service Unavailable", 505: "HTTP Version Not Supported"]

    /// A body's lines, each with its control characters escaped: a peer's text cannot add lines
    /// of its own.
    static func bodyBytes(_ lines: [String]) -> String {
        lines.map(escapingControlCharacters).joined(separator: "\n") + "\n"
    }

    func respond(_ peer: Peer, status: Int, body: [String], head: Bool, extra: String = "") {
        let text = HealthEndpoint.bodyBytes(body)
        var response = "HTTP/1.1 \(status) \(HealthEndpoint.reasonPhrases[status] ?? "Error")\r\nContent-Type: text/plain; charset=utf-8\r\n"
        response += "Content-Length: \(text.utf8.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\(extra)\r\n"
        if !head { response += text }
        peer.outbound.append(contentsOf: response.utf8)
        peer.closeWhenFlushed = true
        peer.pending = []
    }

    func respond(_ connection: HTTP2Connection, _ stream: UInt32, status: Int, body: [String], head: Bool) {
        let text = Array(HealthEndpoint.bodyBytes(body).utf8)
        connection.sendHeaders(streamID: stream, [HeaderField(":status", String(status)), HeaderField("content-type", "text/plain; charset=utf-8"),
                                                  HeaderField("content-length", String(text.count)), HeaderField("cache-control", "no-store")],
                               endStream: head)
        if !head { connection.sendData(streamID: stream, text, endStream: true) }
    }

    /// A verdict on /readyz or /livez, as the request asked (verbose or not); counted as answered.
    func httpAnswer(_ entry: Pending, _ verdict: Verdict) -> (Int, [String]) {
        count(entry.kind, verdict)
        let snapshot = self.snapshot
        return HealthServer.http(verdict, HealthEndpoint.question(entry.kind, service: nil).kind,
                                 verbose: entry.verbose ? snapshot.lines(entry.listings ?? []) : nil,
                                 withoutHealth: snapshot.withoutHealth && entry.service.isEmpty)
    }

    /// A Check's verdict, over gRPC, on a stream whose response headers went out.
    func grpcAnswer(_ connection: HTTP2Connection, _ stream: UInt32, _ verdict: Verdict) {
        count(.check, verdict)
        let (response, status) = HealthServer.grpc(verdict)
        if let response { connection.sendData(streamID: stream, GRPCServerCall.message(Health.response(response)), endStream: false) }
        connection.sendHeaders(streamID: stream, GRPCServerCall.trailers(status), endStream: true)
    }

    /// The endpoint's List, on a stream whose response headers went out.
    func grpcListAnswer(_ connection: HTTP2Connection, _ stream: UInt32, _ verdict: Verdict, _ listings: [ServerListing]) {
        count(.list, verdict)
        let (entries, status) = HealthServer.grpcList(verdict, snapshot, listings)
        if let entries { connection.sendData(streamID: stream, GRPCServerCall.message(Health.listResponse(entries)), endStream: false) }
        connection.sendHeaders(streamID: stream, GRPCServerCall.trailers(status), endStream: true)
    }

    // MARK: gRPC over h2c

    func handleGRPC(stream: UInt32, path: String, fields: [HeaderField], body: [UInt8], on peer: Peer, _ connection: HTTP2Connection) {
        let watch = path == Health.watchPath
        let list = path == Health.listPath
        guard path == Health.checkPath || watch || list else {
            return connection.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.unimplemented, "unknown method \(path)")), endStream: true)
        }
        let service: String
        switch GRPCServerCall.request(from: body, maxMessageSize: limits.maxRequestBody) {
        case .failure(let status):
            return connection.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(status), endStream: true)
        case .success(let message):
            do { service = try Health.decodeRequest(message) } catch {
                let status = GRPCStatus(.internalError, "grpc: error unmarshalling request: \(error)")
                return connection.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(status), endStream: true)
            }
        }
        var timeout = limits.defaultTimeout
        if let text = fields.first(where: { $0.name == "grpc-timeout" })?.value, let parsed = decodeGRPCTimeout(text) {
            timeout = min(parsed, limits.maxTimeout)
        }
        if watch && peer.pending.filter({ if case .watch = $0.kind { return true } else { return false } }).count >= limits.maxWatches {
            return connection.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.resourceExhausted, "too many watches")), endStream: true)
        }
        let kind: Kind = watch ? .watch : list ? .list : .check
        let question = HealthEndpoint.question(kind, service: service)
        let decision = HealthServer.decide(question, snapshot(for: question))
        connection.sendHeaders(streamID: stream, GRPCServerCall.responseHeaders, endStream: false)
        switch decision {
        case .list(let servers):
            let now = MonotonicClock.now()
            let deadline = now.addingSaturated(timeout)
            peer.pending.append(Pending(kind: .list, stream: stream, deadline: deadline,
                                        waiting: lists.wait(for: servers, until: HealthServer.listsDeadline(now: now, deadline: deadline), now: now)))
            peer.awaitsLists = true
        case .now(let verdict, _) where list:
            grpcListAnswer(connection, stream, verdict, [])
        case .now(.draining, _) where watch:
            // The Watch stays open: NOT_SERVING is its last word until the process ends.
            peer.pending.append(Pending(kind: .watch, stream: stream))
            connection.sendData(streamID: stream, GRPCServerCall.message(Health.response(.notServing)), endStream: false)
        case .now(let verdict, _):
            grpcAnswer(connection, stream, verdict)
        case .check(let checked):
            peer.pending.append(Pending(kind: .check, stream: stream,
                                        handle: channel?.start(path: Health.checkPath, metadata: metadata,
                                                               request: Health.request(service: checked), timeout: timeout),
                                        service: checked))
            if channel == nil { answerWithoutChild(peer, peer.pending.count - 1) }
        case .watch(let watched):
            peer.pending.append(Pending(kind: .watch, stream: stream,
                                        handle: channel?.start(path: Health.watchPath, metadata: metadata, request: Health.request(service: watched),
                                                               serverStreaming: true, timeout: nil)))
            if channel == nil { answerWithoutChild(peer, peer.pending.count - 1) }
        }
    }

    /// The verdict of a finished Check.
    func verdict(_ entry: Pending, _ handle: Channel.CallHandle, _ status: GRPCStatus) -> Verdict {
        HealthServer.verdict(checking: entry.service, status: status, message: handle.nextMessage(), unreachable: handle.dialFailure?.unreachable, snapshot)
    }

    /// Answers what finished on the channel.
    func progress(_ peer: Peer, now: Int64) {
        resumeListed(peer, now: now)
        switch peer.speaks {
        case .undecided:
            return
        case .http1:
            guard let first = peer.pending.first, let handle = first.handle, let status = handle.status else { return }
            let (code, body) = httpAnswer(first, verdict(first, handle, status))
            respond(peer, status: code, body: body, head: first.headOnly)
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
                    let (code, body) = httpAnswer(entry, verdict(entry, handle, status))
                    respond(connection, stream, status: code, body: body, head: entry.headOnly)
                    peer.pending.remove(at: index)
                    continue
                case .check:
                    guard let status = handle.status else { break }
                    grpcAnswer(connection, stream, verdict(entry, handle, status))
                    peer.pending.remove(at: index)
                    continue
                case .list:
                    break
                case .watch:
                    while let message = handle.nextMessage() {
                        connection.sendData(streamID: stream, GRPCServerCall.message(message), endStream: false)
                    }
                    if let status = handle.status {
                        let ended = handle.dialFailure.map { GRPCStatus(.unavailable, $0.unreachable.description) } ?? HealthServer.watchEnded(status)
                        connection.sendHeaders(streamID: stream, GRPCServerCall.trailers(ended), endStream: true)
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
        let entry = peer.pending[index]
        let verdict = HealthServer.verdict(for: HealthEndpoint.question(entry.kind, service: nil), snapshot)
        switch peer.speaks {
        case .http1:
            let (code, body) = httpAnswer(entry, verdict)
            respond(peer, status: code, body: body, head: entry.headOnly)
        case .http2(let connection):
            if let stream = entry.stream {
                switch entry.kind {
                case .readyz, .livez:
                    let (code, body) = httpAnswer(entry, verdict)
                    respond(connection, stream, status: code, body: body, head: entry.headOnly)
                case .check:
                    grpcAnswer(connection, stream, verdict)
                case .list:
                    grpcListAnswer(connection, stream, verdict, entry.listings ?? [])
                case .watch:
                    connection.sendHeaders(streamID: stream, GRPCServerCall.trailers(HealthServer.grpc(verdict).status), endStream: true)
                }
            }
            peer.pending.remove(at: index)
            pull(connection, into: peer)
        case .undecided:
            break
        }
    }
}
