import GateProtocol
import HPACK

/// gRPC over one HTTP/2 connection (gRPC's PROTOCOL-HTTP2.md), without I/O: the caller moves
/// bytes between `connection` and the transport. Unary and server-streaming calls share one shape:
/// send the request messages, then take response messages as they arrive until `status` is set.
public final class GRPCClient {
    public struct Settings: Sendable {
        public var authority: String
        public var scheme: String
        /// The user-agent's bytes (a -user-agent that is not UTF-8 goes out as given, as Go's).
        public var userAgent: [UInt8]
        /// The largest response message accepted, before or after decompression.
        public var maxMessageSize = 4 << 20
        public var limits = HTTP2Connection.Limits()

        public init(authority: String, scheme: String = "http", userAgent: [UInt8]) {
            self.authority = authority
            self.scheme = scheme
            self.userAgent = userAgent
        }
    }

    public let settings: Settings
    public let connection: HTTP2Connection
    private var calls: [UInt32: GRPCCall] = [:]
    /// Why the connection can no longer carry calls, once it cannot.
    public private(set) var connectionFailure: GRPCStatus?

    public init(_ settings: Settings) {
        self.settings = settings
        self.connection = HTTP2Connection(limits: settings.limits)
    }

    public var isReady: Bool { connection.isReady }

    /// Starts a call and sends `request` as its only message, ending the request side.
    /// `timeoutNanoseconds` becomes grpc-timeout; the caller still enforces its own deadline.
    /// A unary call (`serverStreaming` false) takes exactly one response message.
    public func startCall(path: String, metadata: [HeaderField] = [], timeoutNanoseconds: Int64? = nil,
                          compress: Bool = false, serverStreaming: Bool = false, request: [UInt8]) -> GRPCCall {
        var headers = [
            HeaderField(":method", "POST"), HeaderField(":scheme", settings.scheme),
            HeaderField(":path", path), HeaderField(":authority", settings.authority),
            HeaderField("content-type", "application/grpc"), HeaderField(name: Array("user-agent".utf8), value: settings.userAgent),
            HeaderField("te", "trailers"),
        ]
        if compress { headers.append(HeaderField("grpc-encoding", "gzip")) }
        headers.append(HeaderField("grpc-accept-encoding", "gzip"))
        if let timeoutNanoseconds { headers.append(HeaderField("grpc-timeout", encodeGRPCTimeout(nanoseconds: timeoutNanoseconds))) }
        func refused(_ status: GRPCStatus) -> GRPCCall {
            let call = GRPCCall(streamID: 0, maxMessageSize: settings.maxMessageSize, serverStreaming: serverStreaming)
            call.finish(status)
            return call
        }
        switch GRPCClient.metadataHeaders(metadata) {
        case .success(let fields): headers += fields
        case .failure(let status): return refused(status)
        }

        var body = request
        if compress {
            do { body = try Gzip.compress(request) } catch {
                return refused(GRPCStatus(.internalError, "grpc: error while compressing: \(error)"))
            }
        }
        var framed: [UInt8] = [compress ? 1 : 0]
        framed.reserveCapacity(5 + body.count)
        appendUInt32(UInt32(body.count), to: &framed)
        framed.append(contentsOf: body)

        let call = GRPCCall(streamID: 0, maxMessageSize: settings.maxMessageSize, serverStreaming: serverStreaming)
        if let connectionFailure {
            call.refuse(connectionFailure)
        } else if connection.canOpenStream && (connection.isReady || GRPCClient.headerListSize(headers) <= GRPCClient.pipelinedHeaderListLimit) {
            open(call, headers: headers, message: framed)
        } else {
            // Over the server's MAX_CONCURRENT_STREAMS: opened when a stream closes.
            waiting.append((call, headers, framed))
        }
        return call
    }

    /// The request list's size as RFC 7541 counts it (names, values, 32 each), as grpc-go checks
    /// it against the server's SETTINGS_MAX_HEADER_LIST_SIZE.
    private static func headerListSize(_ headers: [HeaderField]) -> Int { headers.reduce(0) { $0 + $1.size } }

    /// Sent before the server's SETTINGS (pipelined behind the preface) only when no server
    /// would refuse it: larger lists wait for the SETTINGS that say the server's limit.
    static let pipelinedHeaderListLimit = 4096

    private func open(_ call: GRPCCall, headers: [HeaderField], message: [UInt8]) {
        if let limit = connection.peerMaxHeaderListSize, GRPCClient.headerListSize(headers) > limit {
            return call.finish(GRPCStatus(.internalError, "header list size to send violates the maximum size (\(limit) bytes) set by server"))
        }
        let id = connection.openStream(headers: headers, endStream: false)
        connection.sendData(streamID: id, message, endStream: true)
        call.streamID = id
        call.request = (headers, message)
        calls[id] = call
    }

    /// Calls waiting for a stream (MAX_CONCURRENT_STREAMS), oldest first.
    private var waiting: [(call: GRPCCall, headers: [HeaderField], message: [UInt8])] = []

    /// Calls not finished: on streams, or waiting for one.
    public var outstanding: Int { calls.count + waiting.count }

    /// Ends a call that is still running (its deadline passed, its caller gave up): its stream
    /// is reset with CANCEL, or it leaves the queue before it got one.
    public func cancel(_ call: GRPCCall, _ status: GRPCStatus) {
        guard call.status == nil else { return }
        call.finish(status)
        if let index = waiting.firstIndex(where: { $0.call === call }) {
            waiting.remove(at: index)
        } else if calls.removeValue(forKey: call.streamID) != nil {
            connection.reset(streamID: call.streamID, code: .cancel)
        }
        openWaiting()
    }

    private func openWaiting() {
        while connection.canOpenStream && connection.isReady && !waiting.isEmpty && connectionFailure == nil {
            let next = waiting.removeFirst()
            open(next.call, headers: next.headers, message: next.message)
        }
    }

    /// The request headers for user metadata, as grpc-go makes them: names lower-cased, values
    /// of `-bin` names base64-encoded, and the names gRPC reserves for itself (pseudo-headers,
    /// content-type, te, grpc-timeout, ...) left out. Every name is checked first, reserved or
    /// not, as grpc-go checks the metadata it holds before it drops any: one name after another
    /// in the order each first appears, each name's own rule before its values. grpc-go walks a
    /// map: up to 8 names sit in that order and the walk starts at a random one of 8 slots, so
    /// the first bad name is the one it reports most of the time, not always.
    static func metadataHeaders(_ metadata: [HeaderField]) -> Result<[HeaderField], GRPCStatus> {
        guard !metadata.isEmpty else { return .success([]) }
        let names = metadata.map { goLowercased($0.nameBytes) }
        var values: [[UInt8]: [[UInt8]]] = [:]
        var order: [[UInt8]] = []
        for (name, field) in zip(names, metadata) {
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(field.valueBytes)
        }
        for name in order {
            if let problem = invalidMetadataPair(name, values[name] ?? []) { return .failure(GRPCStatus(.internalError, problem)) }
        }
        var fields: [HeaderField] = []
        for (name, field) in zip(names, metadata) {
            if name.first == UInt8(ascii: ":") || reservedNames.contains(String(decoding: name, as: UTF8.self)) { continue }
            let value = name.reversed().starts(with: "nib-".utf8) ? Array(base64(field.valueBytes).utf8) : field.valueBytes
            fields.append(HeaderField(name: name, value: value))
        }
        return .success(fields)
    }

    /// grpc-go's rule for a metadata name and its values; nil when they are acceptable.
    static func invalidMetadataPair(_ name: [UInt8], _ values: [[UInt8]]) -> String? {
        if name.first == UInt8(ascii: ":") { return nil }
        if let problem = invalidMetadataName(name) { return problem }
        if name.reversed().starts(with: "nib-".utf8) { return nil }
        if values.contains(where: { $0.contains(where: { $0 < 0x20 || $0 > 0x7E }) }) {
            return "header key \(quoted(String(decoding: name, as: UTF8.self))) contains value with non-printable ASCII characters"
        }
        return nil
    }

    /// Go's strings.ToLower over bytes: each rune to its simple lower case (U+0130 to "i", not
    /// "i" and a combining dot as Swift's full mapping has it), ASCII at once, bytes that are
    /// not UTF-8 as the replacement character.
    public static func goLowercased(_ bytes: [UInt8]) -> [UInt8] {
        if !bytes.contains(where: { $0 >= 0x80 }) {
            return bytes.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
        }
        var out: [UInt8] = []
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            let lower = scalar.properties.lowercaseMapping.unicodeScalars.first ?? scalar
            out.append(contentsOf: String(lower).utf8)
        }
        return out
    }

    /// What grpc-go's transport sets itself and drops from user metadata.
    static let reservedNames: Set<String> = [
        "content-type", "user-agent", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status",
        "grpc-timeout", "grpc-status-details-bin", "te",
    ]

    /// Feeds bytes read from the transport.
    public func receive(_ bytes: [UInt8]) {
        let events: [HTTP2Connection.Event]
        do {
            events = try connection.receive(bytes)
        } catch {
            failAll(GRPCStatus(.internalError, "connection error: \(error)"))
            return
        }
        for event in events {
            switch event {
            case .ready:
                break
            case .headers(let id, let fields, let end):
                guard let call = calls[id] else { continue }
                call.receiveHeaders(fields, endStream: end)
                settle(call)
            case .data(let id, let bytes, let end):
                guard let call = calls[id] else { continue }
                call.receiveData(bytes, endStream: end)
                settle(call)
            case .reset(let id, let code):
                guard let call = calls.removeValue(forKey: id) else { continue }
                // REFUSED_STREAM: the server did not process the call (RFC 9113 §8.7). Sent again
                // once on a new stream, as grpc-go retries transparently; refused twice, it is
                // left for the caller (which may try another connection).
                if code == .refusedStream, !call.retriedTransparently, let request = call.request {
                    call.retriedTransparently = true
                    waiting.insert((call, request.headers, request.message), at: 0)
                } else if code == .refusedStream {
                    call.refuse(GRPCStatus.fromReset(code))
                } else {
                    call.finish(GRPCStatus.fromReset(code))
                }
            case .streamError(let id, let code, let reason):
                guard let call = calls.removeValue(forKey: id) else { continue }
                call.finish(GRPCStatus(GRPCStatus.fromReset(code).code, reason))
            case .goAway(let last, let code, let debug):
                // Calls up to `last` go on and finish here; those above it, and those waiting,
                // were not processed and may go to another connection.
                let reason = "server sent GOAWAY (\(code)\(debug.isEmpty ? "" : ": \(debug)"))"
                let status = GRPCStatus(.unavailable, reason)
                if connectionFailure == nil { connectionFailure = status }
                for (id, call) in calls where id > last {
                    calls[id] = nil
                    call.refuse(status)
                }
                for pending in waiting { pending.call.refuse(status) }
                waiting.removeAll()
            }
        }
        openWaiting()
    }

    /// Whether new calls can no longer go on this connection (it failed, or the server is
    /// going away); calls already on it may still finish.
    public var isDraining: Bool { connectionFailure != nil }

    /// The transport ended (EOF or error): every call still open fails with `reason`.
    public func transportClosed(_ reason: String) {
        failAll(GRPCStatus(.unavailable, reason))
    }

    private func failAll(_ status: GRPCStatus) {
        if connectionFailure == nil { connectionFailure = status }
        for call in calls.values { call.finish(status) }
        calls.removeAll()
        for pending in waiting { pending.call.refuse(status) }  // never sent
        waiting.removeAll()
    }

    private func settle(_ call: GRPCCall) {
        guard call.status != nil else { return }
        if calls.removeValue(forKey: call.streamID) != nil, call.needsReset {
            connection.reset(streamID: call.streamID, code: .cancel)
        }
    }

    /// grpc-go's rule for metadata keys; nil when `name` is acceptable.
    static func invalidMetadataName(_ name: [UInt8]) -> String? {
        if name.isEmpty { return "there is an empty key in the header" }
        let ok = name.allSatisfy { c in
            (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
        return ok ? nil : "header key \(quoted(String(decoding: name, as: UTF8.self))) contains illegal characters not in [0-9a-z-_.]"
    }
}

/// Base64 without padding (RFC 4648 §4 and §3.2), as gRPC sends binary metadata.
func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    out.reserveCapacity((bytes.count * 4 + 2) / 3)
    var i = 0
    while i < bytes.count {
        let n = min(3, bytes.count - i)
        var group = UInt32(bytes[i]) << 16
        if n > 1 { group |= UInt32(bytes[i + 1]) << 8 }
        if n > 2 { group |= UInt32(bytes[i + 2]) }
        for k in 0...n { out.append(alphabet[Int((group >> (18 - 6 * UInt32(k))) & 0x3F)]) }
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}

/// `"text"`, for names in messages; the probe escapes what it prints.
func quoted(_ text: String) -> String { "\"" + text + "\"" }

/// One call's response side: headers, length-prefixed messages, trailers.
public final class GRPCCall {
    /// 0 until the call has a stream.
    public fileprivate(set) var streamID: UInt32
    /// The call failed before the server processed it (never sent, refused by REFUSED_STREAM, or
    /// above a GOAWAY's last stream): it may be sent again on another connection.
    public private(set) var wasNotProcessed = false
    public private(set) var status: GRPCStatus?
    public private(set) var messages: [[UInt8]] = []
    /// A server-streaming call takes any number of messages, a unary one exactly one.
    public let serverStreaming: Bool

    private let maxMessageSize: Int
    /// Response messages received so far (taken or not).
    private var received = 0
    /// Bytes in `messages`, bounded as a single message is: a server that sends faster than the
    /// caller takes fails the call instead of filling memory.
    private var queuedBytes = 0
    private var headersSeen = false
    private var encoding: String?
    private var pending: [UInt8] = []
    /// The stream is still open at the server: finishing early must RST it.
    fileprivate private(set) var needsReset = false
    /// What was sent, for the one transparent retry of a stream the server refused.
    fileprivate var request: (headers: [HeaderField], message: [UInt8])?
    fileprivate var retriedTransparently = false

    init(streamID: UInt32, maxMessageSize: Int, serverStreaming: Bool) {
        self.streamID = streamID
        self.maxMessageSize = maxMessageSize
        self.serverStreaming = serverStreaming
    }

    /// Removes and returns the oldest received message.
    public func nextMessage() -> [UInt8]? {
        guard !messages.isEmpty else { return nil }
        let message = messages.removeFirst()
        queuedBytes -= message.count
        return message
    }

    fileprivate func finish(_ s: GRPCStatus) {
        if status == nil { status = s }
    }

    fileprivate func refuse(_ s: GRPCStatus) {
        guard status == nil else { return }
        wasNotProcessed = true
        status = s
    }

    private func fail(_ s: GRPCStatus, streamOpen: Bool) {
        guard status == nil else { return }
        needsReset = streamOpen
        status = s
    }

    fileprivate func receiveHeaders(_ fields: [HeaderField], endStream: Bool) {
        func value(_ name: String) -> String? { fields.first { $0.name == name }?.value }
        if !headersSeen {
            headersSeen = true
            let httpStatus = value(":status") ?? ""
            if httpStatus != "200" && value("grpc-status") == nil {
                return fail(GRPCStatus.fromHTTPStatus(httpStatus.isEmpty ? "(missing)" : httpStatus), streamOpen: !endStream)
            }
            let contentType = value("content-type") ?? ""
            if !contentType.hasPrefix("application/grpc") && value("grpc-status") == nil {
                let shown = contentType.isEmpty ? "missing content-type" : "unexpected content-type \"\(contentType)\""
                return fail(GRPCStatus(.unknown, "malformed header: \(shown)"), streamOpen: !endStream)
            }
            encoding = value("grpc-encoding")
            if !endStream { return }
            // Trailers-Only: this one HEADERS frame carries the status.
        } else if !endStream {
            return fail(GRPCStatus(.internalError, "server sent a second HEADERS frame without END_STREAM"), streamOpen: true)
        }
        guard let rawStatus = value("grpc-status") else {
            return fail(GRPCStatus(.internalError, "server closed the stream without grpc-status"), streamOpen: false)
        }
        guard let code = Int(rawStatus) else {
            return fail(GRPCStatus(.internalError, "malformed grpc-status \"\(rawStatus)\""), streamOpen: false)
        }
        if !pending.isEmpty {
            return fail(GRPCStatus(.internalError, "server closed the stream with an incomplete message"), streamOpen: false)
        }
        finish(GRPCStatus(rawCode: code, message: percentDecode(value("grpc-message") ?? ""), fromServer: true))
    }

    fileprivate func receiveData(_ bytes: [UInt8], endStream: Bool) {
        guard status == nil else { return }
        guard headersSeen else {
            return fail(GRPCStatus(.internalError, "server sent DATA before HEADERS"), streamOpen: !endStream)
        }
        pending.append(contentsOf: bytes)
        while pending.count >= 5 {
            let flag = pending[0]
            let length = Int(readUInt32(pending, at: 1))
            if length > maxMessageSize {
                return fail(GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(length) vs. \(maxMessageSize))"), streamOpen: !endStream)
            }
            if !serverStreaming && received == 1 {
                return fail(GRPCStatus(.internalError, "grpc: cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message"),
                            streamOpen: !endStream)
            }
            // Room for the whole message at once: growing by doubling would take twice its size.
            if pending.count < 5 + length { pending.reserveCapacity(5 + length) }
            guard pending.count >= 5 + length else { break }
            var message = Array(pending[5..<(5 + length)])
            pending.removeFirst(5 + length)
            switch flag {
            case 0: break
            case 1:
                guard let encoding, encoding != "identity" else {
                    return fail(GRPCStatus(.internalError, "grpc: compressed flag set with identity or empty encoding"), streamOpen: !endStream)
                }
                guard encoding == "gzip" else {
                    return fail(GRPCStatus(.unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""), streamOpen: !endStream)
                }
                do { message = try Gzip.decompress(message, limit: maxMessageSize) } catch {
                    switch error {
                    case .tooLarge(let limit):
                        return fail(GRPCStatus(.resourceExhausted, "grpc: received message after decompression larger than max (\(limit))"),
                                    streamOpen: !endStream)
                    case .zlib:
                        return fail(GRPCStatus(.internalError, "grpc: failed to decompress the received message: \(error)"), streamOpen: !endStream)
                    }
                }
            default:
                return fail(GRPCStatus(.internalError, "grpc: invalid message compression flag \(flag)"), streamOpen: !endStream)
            }
            if queuedBytes + message.count > maxMessageSize && !messages.isEmpty {
                return fail(GRPCStatus(.resourceExhausted, "grpc: response messages arrived faster than they were taken (over \(maxMessageSize) bytes queued)"),
                            streamOpen: !endStream)
            }
            received += 1
            queuedBytes += message.count
            messages.append(message)
        }
        if endStream {
            fail(GRPCStatus(.internalError, "server closed the stream without sending trailers"), streamOpen: false)
        }
    }
}
