import HPACK

/// gRPC over one HTTP/2 connection (gRPC's PROTOCOL-HTTP2.md), without I/O: the caller moves
/// bytes between `connection` and the transport. Unary and server-streaming calls share one shape:
/// send the request messages, then take response messages as they arrive until `status` is set.
public final class GRPCClient {
    public struct Settings: Sendable {
        public var authority: String
        public var scheme: String
        public var userAgent: String
        /// The largest response message accepted, before or after decompression.
        public var maxMessageSize = 4 << 20
        public var limits = HTTP2Connection.Limits()

        public init(authority: String, scheme: String = "http", userAgent: String) {
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
    public func startCall(path: String, metadata: [HeaderField] = [], timeoutNanoseconds: Int64? = nil,
                          compress: Bool = false, request: [UInt8]) -> GRPCCall {
        var headers = [
            HeaderField(":method", "POST"), HeaderField(":scheme", settings.scheme),
            HeaderField(":path", path), HeaderField(":authority", settings.authority),
            HeaderField("content-type", "application/grpc"), HeaderField("user-agent", settings.userAgent),
            HeaderField("te", "trailers"),
        ]
        if compress { headers.append(HeaderField("grpc-encoding", "gzip")) }
        headers.append(HeaderField("grpc-accept-encoding", "gzip"))
        if let timeoutNanoseconds { headers.append(HeaderField("grpc-timeout", encodeGRPCTimeout(nanoseconds: timeoutNanoseconds))) }
        for field in metadata {
            let name = field.name.lowercased()
            if let problem = GRPCClient.invalidMetadataName(name) {
                let call = GRPCCall(streamID: 0, maxMessageSize: settings.maxMessageSize)
                call.finish(GRPCStatus(.internalError, problem))
                return call
            }
            headers.append(HeaderField(name, field.value))
        }

        var body = request
        if compress {
            do { body = try Gzip.compress(request) } catch {
                let call = GRPCCall(streamID: 0, maxMessageSize: settings.maxMessageSize)
                call.finish(GRPCStatus(.internalError, "grpc: error while compressing: \(error)"))
                return call
            }
        }
        var framed: [UInt8] = [compress ? 1 : 0]
        framed.reserveCapacity(5 + body.count)
        let n = UInt32(body.count)
        framed.append(contentsOf: [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)])
        framed.append(contentsOf: body)

        let id = connection.openStream(headers: headers, endStream: false)
        connection.sendData(streamID: id, framed, endStream: true)
        let call = GRPCCall(streamID: id, maxMessageSize: settings.maxMessageSize)
        if let connectionFailure { call.finish(connectionFailure) } else { calls[id] = call }
        return call
    }

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
                call.finish(GRPCStatus.fromReset(code))
            case .goAway(let last, let code, let debug):
                let reason = "server sent GOAWAY (\(code)\(debug.isEmpty ? "" : ": \(debug)"))"
                connectionFailure = GRPCStatus(.unavailable, reason)
                for (id, call) in calls where id > last {
                    calls[id] = nil
                    call.finish(GRPCStatus(.unavailable, reason))
                }
            }
        }
    }

    /// The transport ended (EOF or error): every call still open fails with `reason`.
    public func transportClosed(_ reason: String) {
        failAll(GRPCStatus(.unavailable, reason))
    }

    private func failAll(_ status: GRPCStatus) {
        if connectionFailure == nil { connectionFailure = status }
        for call in calls.values { call.finish(status) }
        calls.removeAll()
    }

    private func settle(_ call: GRPCCall) {
        guard call.status != nil else { return }
        if calls.removeValue(forKey: call.streamID) != nil, call.needsReset {
            connection.reset(streamID: call.streamID, code: .cancel)
        }
    }

    /// grpc-go's rule for metadata keys; nil when `name` is acceptable.
    static func invalidMetadataName(_ name: String) -> String? {
        if name.isEmpty { return "there is an empty key in the header" }
        let ok = name.utf8.allSatisfy { c in
            (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
        return ok ? nil : "header key \(quote(name)) contains illegal characters not in [0-9a-z-_.]"
    }

    private static func quote(_ s: String) -> String { "\"" + s + "\"" }
}

/// One call's response side: headers, length-prefixed messages, trailers.
public final class GRPCCall {
    public let streamID: UInt32
    public private(set) var status: GRPCStatus?
    public private(set) var messages: [[UInt8]] = []

    private let maxMessageSize: Int
    private var headersSeen = false
    private var encoding: String?
    private var pending: [UInt8] = []
    /// The stream is still open at the server: finishing early must RST it.
    fileprivate private(set) var needsReset = false

    init(streamID: UInt32, maxMessageSize: Int) {
        self.streamID = streamID
        self.maxMessageSize = maxMessageSize
    }

    /// Removes and returns the oldest received message.
    public func nextMessage() -> [UInt8]? {
        messages.isEmpty ? nil : messages.removeFirst()
    }

    fileprivate func finish(_ s: GRPCStatus) {
        if status == nil { status = s }
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
        finish(GRPCStatus(rawCode: code, message: percentDecode(value("grpc-message") ?? "")))
    }

    fileprivate func receiveData(_ bytes: [UInt8], endStream: Bool) {
        guard status == nil else { return }
        guard headersSeen else {
            return fail(GRPCStatus(.internalError, "server sent DATA before HEADERS"), streamOpen: !endStream)
        }
        pending.append(contentsOf: bytes)
        while pending.count >= 5 {
            let flag = pending[0]
            let length = Int(pending[1]) << 24 | Int(pending[2]) << 16 | Int(pending[3]) << 8 | Int(pending[4])
            if length > maxMessageSize {
                return fail(GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(length) vs. \(maxMessageSize))"), streamOpen: !endStream)
            }
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
                    return fail(GRPCStatus(.resourceExhausted, "grpc: failed to decompress the received message: \(error)"), streamOpen: !endStream)
                }
            default:
                return fail(GRPCStatus(.internalError, "grpc: invalid message compression flag \(flag)"), streamOpen: !endStream)
            }
            messages.append(message)
        }
        if endStream {
            fail(GRPCStatus(.internalError, "server closed the stream without sending trailers"), streamOpen: false)
        }
    }
}
