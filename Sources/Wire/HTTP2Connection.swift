import HPACK

/// Which end of a connection we are. The client opens streams (odd IDs) and sends requests; the
/// server takes them and answers. Everything else is the same machine for both.
public enum ConnectionRole: Sendable {
    case client, server

    /// The other end, as the messages name it.
    var peer: String { self == .client ? "server" : "client" }
}

/// One HTTP/2 connection (RFC 9113), either end, without I/O: bytes read from the transport go
/// into `receive`, and whatever the connection has to say accumulates in `outbound` for the
/// caller to write. Frame decoding, SETTINGS, flow control in both directions, PING, GOAWAY,
/// RST_STREAM and the verdicts on a peer's mistakes (ignore, stream error, connection error) are
/// written once here; what differs by role (who opens streams, which header lists are valid) is
/// decided by `role`. Everything it keeps is bounded by `limits`: it may face anyone.
public final class HTTP2Connection {
    public struct Limits: Sendable {
        /// SETTINGS_MAX_FRAME_SIZE we advertise (and enforce).
        public var maxFrameSize = 16_384
        /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise (and enforce on decoded lists).
        public var maxHeaderListSize = 64 << 10
        /// Per-stream receive window we advertise; the connection window is raised to match.
        public var receiveWindow = 1 << 20
        /// SETTINGS_MAX_CONCURRENT_STREAMS we advertise: the peer's streams beyond it are refused.
        public var maxConcurrentStreams: Int? = nil
        /// RST_STREAM frames the peer may send over the connection's life (rapid reset,
        /// CVE-2023-44487) before it is told to go away.
        public var maxPeerResets: Int? = nil
        /// Bytes waiting unsent (answers to PINGs and SETTINGS of a peer that does not read):
        /// past this the connection is ended.
        public var maxOutbound: Int? = nil

        /// A client's: large windows for answers, the caller bounds what it keeps unsent.
        public init() {}

        /// A server's facing whoever can reach its port: a request is a header block and a
        /// small body, so windows and lists are small and every queue is capped.
        public static var server: Limits {
            var limits = Limits()
            limits.maxHeaderListSize = 8 << 10
            limits.receiveWindow = 65_535
            limits.maxConcurrentStreams = 16
            limits.maxPeerResets = 128
            limits.maxOutbound = 256 << 10
            return limits
        }
    }

    public enum Event: Equatable {
        /// The peer's first SETTINGS frame arrived: the connection is established.
        case ready
        /// A header block: a request's or response's head, or its trailers.
        case headers(streamID: UInt32, fields: [HeaderField], endStream: Bool)
        case data(streamID: UInt32, bytes: [UInt8], endStream: Bool)
        /// The peer reset the stream (RST_STREAM).
        case reset(streamID: UInt32, code: HTTP2ErrorCode)
        /// The peer broke the protocol on one stream; we reset it with `code`, and `reason`
        /// says what was wrong.
        case streamError(streamID: UInt32, code: HTTP2ErrorCode, reason: String)
        case goAway(lastStreamID: UInt32, code: HTTP2ErrorCode, debug: String)
    }

    public static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    public let role: ConnectionRole
    public let limits: Limits
    public internal(set) var outbound: [UInt8] = []
    /// The peer's SETTINGS came: the connection is established.
    public internal(set) var isReady = false
    /// The connection error that ended the connection (GOAWAY queued): nothing more is read.
    public internal(set) var failure: HTTP2Error?
    /// The peer's GOAWAY, once one came: our streams above its last stream ID were not processed.
    public internal(set) var goAwayLastStreamID: UInt32? = nil
    /// SETTINGS_MAX_CONCURRENT_STREAMS from the peer: how many streams we may open.
    public internal(set) var peerMaxConcurrentStreams = Int.max
    /// SETTINGS_MAX_HEADER_LIST_SIZE from the peer, once it said one.
    public internal(set) var peerMaxHeaderListSize: Int? = nil

    var inbound = ByteBuffer()
    /// A server waits for the client's preface before any frame.
    var awaitingPreface: Bool
    var encoder = HPACKEncoder()
    var decoder: HPACKDecoder
    var nextLocalStreamID: UInt32
    /// The highest stream ID the peer opened.
    var lastPeerStreamID: UInt32 = 0
    var peerMaxFrameSize = 16_384
    var peerInitialWindow = 65_535
    var connectionSendWindow = 65_535
    var connectionReceiveUnacknowledged = 0
    var peerResets = 0
    var streams: [UInt32: HTTP2Stream] = [:]
    /// Streams closed lately, and whether we reset them: frames already in flight on a stream we
    /// reset are ignored; on one closed otherwise they are STREAM_CLOSED (§5.1). Older IDs below
    /// the last one opened count as never opened.
    var closedLately: [(id: UInt32, resetByUs: Bool)] = []
    static let closedLatelyKept = 128
    /// HEADERS without END_HEADERS: the stream, its flags and the fragments so far.
    var continuing: (streamID: UInt32, endStream: Bool, block: [UInt8])? = nil

    public init(role: ConnectionRole = .client, limits: Limits = Limits()) {
        self.role = role
        self.limits = limits
        self.decoder = HPACKDecoder(tableSizeLimit: 4096, maxHeaderListSize: limits.maxHeaderListSize)
        // We never push, so a server's own stream IDs (even) are never used.
        nextLocalStreamID = role == .client ? 1 : 2
        awaitingPreface = role == .server
        if role == .client { outbound.append(contentsOf: HTTP2Connection.preface) }
        var settings: [UInt8] = []
        func setting(_ id: SettingID, _ value: Int) {
            settings.append(contentsOf: [UInt8(id.rawValue >> 8), UInt8(id.rawValue & 0xFF)])
            appendUInt32(UInt32(value), to: &settings)
        }
        if let streams = limits.maxConcurrentStreams { setting(.maxConcurrentStreams, streams) }
        setting(.enablePush, 0)
        if limits.receiveWindow != 65_535 { setting(.initialWindowSize, limits.receiveWindow) }
        if role == .client || limits.maxFrameSize != 16_384 { setting(.maxFrameSize, limits.maxFrameSize) }
        setting(.maxHeaderListSize, limits.maxHeaderListSize)
        Frame(.settings, streamID: 0, payload: settings).serialize(into: &outbound)
        let raise = limits.receiveWindow - 65_535
        if raise > 0 { windowUpdate(stream: 0, increment: raise) }
    }

    /// Hands over what is to be written, emptying the buffer.
    public func takeOutbound() -> [UInt8] {
        defer { outbound.removeAll(keepingCapacity: true) }
        return outbound
    }

    public var hasOutbound: Bool { !outbound.isEmpty }

    /// Whether a new stream may be opened now (a client's): under the peer's
    /// MAX_CONCURRENT_STREAMS, before any GOAWAY, and with stream IDs left.
    public var canOpenStream: Bool {
        role == .client && failure == nil && streams.count < peerMaxConcurrentStreams && goAwayLastStreamID == nil
            && nextLocalStreamID < 0x7FFF_FFFF
    }

    /// Streams open or half closed.
    public var activeStreams: Int { streams.count }

    /// What must hold between any two calls, whatever the peer sent: windows within their
    /// bounds, every queue under its cap, no idle stream kept. Nil when all of it holds; the
    /// fuzzers and tests check it after every step.
    public var invariantViolation: String? {
        let maxWindow = Int(Int32.max)
        if connectionSendWindow < 0 || connectionSendWindow > maxWindow { return "connection send window \(connectionSendWindow)" }
        if connectionReceiveUnacknowledged > limits.receiveWindow { return "connection receive window overrun" }
        var peerStreams = 0
        for (id, stream) in streams {
            if let window = stream.state.sendWindow, window < -maxWindow - 1 || window > maxWindow { return "stream \(id) send window \(window)" }
            if stream.state.receiveUnacknowledged > limits.receiveWindow { return "stream \(id) receive window overrun" }
            if peerInitiated(id) {
                peerStreams += 1
                if id > lastPeerStreamID { return "stream \(id) kept though idle" }
            } else if id >= nextLocalStreamID {
                return "stream \(id) kept though never opened"
            }
            if stream.queue.isEmpty == false && stream.state.sendWindow == nil { return "stream \(id) holds what it can no longer send" }
        }
        if let cap = limits.maxConcurrentStreams, peerStreams > cap { return "\(peerStreams) peer streams over the cap of \(cap)" }
        if failure == nil, let cap = limits.maxOutbound, outbound.count > cap { return "\(outbound.count) bytes unsent over the cap of \(cap)" }
        if closedLately.count > HTTP2Connection.closedLatelyKept { return "closed streams remembered over the cap" }
        if let block = continuing?.block, block.count > limits.maxHeaderListSize { return "header block over the cap" }
        if inbound.count > HTTP2Connection.preface.count + Frame.headerLength + limits.maxFrameSize { return "\(inbound.count) bytes buffered" }
        return nil
    }

    // MARK: Sending

    /// Opens a stream with a HEADERS frame (and CONTINUATIONs when needed); returns its ID. The
    /// caller (a client) checks `canOpenStream` first.
    public func openStream(headers: [HeaderField], endStream: Bool) -> UInt32 {
        let id = nextLocalStreamID
        nextLocalStreamID += 2
        streams[id] = HTTP2Stream(state: endStream ? .halfClosedLocal(receiveUnacknowledged: 0)
                                                   : .open(sendWindow: peerInitialWindow, receiveUnacknowledged: 0))
        serializeHeaderBlock(encoder.encode(headers), streamID: id, endStream: endStream, maxFrameSize: peerMaxFrameSize, into: &outbound)
        return id
    }

    /// Headers (a response's head, or trailers with `endStream`) on a stream whose side is ours
    /// to send, in turn after what is queued on it.
    public func sendHeaders(streamID: UInt32, _ fields: [HeaderField], endStream: Bool) {
        enqueue(streamID, .headers(fields, endStream: endStream))
    }

    /// Queues DATA on a stream, sent as far as the flow-control windows allow now and the rest
    /// when the peer's WINDOW_UPDATEs arrive.
    public func sendData(streamID: UInt32, _ bytes: [UInt8], endStream: Bool) {
        enqueue(streamID, .data(bytes, endStream: endStream))
    }

    /// Abandons a stream with RST_STREAM (CANCEL when a caller gives up, a limit's code).
    public func reset(streamID: UInt32, code: HTTP2ErrorCode) {
        guard streams.removeValue(forKey: streamID) != nil else { return }
        rstStream(streamID, code)
    }

    /// Ends the connection politely: GOAWAY naming the last stream the peer opened.
    public func close(code: HTTP2ErrorCode = .noError, debug: String = "") {
        var payload: [UInt8] = []
        appendUInt32(lastPeerStreamID, to: &payload)
        appendUInt32(code.rawValue, to: &payload)
        payload.append(contentsOf: debug.utf8.prefix(256))
        Frame(.goAway, streamID: 0, payload: payload).serialize(into: &outbound)
    }

    func enqueue(_ id: UInt32, _ segment: HTTP2Stream.Segment) {
        guard failure == nil, var stream = streams[id], stream.state.sendWindow != nil else { return }
        stream.queue.append(segment)
        streams[id] = stream
        flush(id)
        checkOutbound()
    }

    /// Sends what waits on a stream, DATA as far as the windows allow (none while a window is
    /// zero or below), and closes our side at END_STREAM.
    func flush(_ id: UInt32) {
        guard var stream = streams[id], var window = stream.state.sendWindow else { return }
        sending: while let segment = stream.queue.first {
            let endStream: Bool
            switch segment {
            case .headers(let fields, let end):
                serializeHeaderBlock(encoder.encode(fields), streamID: id, endStream: end, maxFrameSize: peerMaxFrameSize, into: &outbound)
                stream.queue.removeFirst()
                endStream = end
            case .data(let bytes, let end):
                let allowed = max(0, min(bytes.count, window, connectionSendWindow, peerMaxFrameSize))
                if allowed == 0 && !bytes.isEmpty { break sending }
                window -= allowed
                connectionSendWindow -= allowed
                let done = allowed == bytes.count
                Frame(.data, flags: done && end ? FrameFlags.endStream : 0, streamID: id,
                      payload: done ? bytes : Array(bytes.prefix(allowed))).serialize(into: &outbound)
                if done {
                    stream.queue.removeFirst()
                } else {
                    stream.queue[0] = .data(Array(bytes.dropFirst(allowed)), endStream: end)
                }
                endStream = done && end
            }
            if endStream {
                guard let next = stream.state.closingLocal else {
                    streams[id] = nil  // both sides closed
                    remember(id, resetByUs: false)
                    return
                }
                stream.state = next
                stream.queue.removeAll()
                streams[id] = stream
                return
            }
        }
        stream.state = stream.state.withSendWindow(window)
        streams[id] = stream
    }

    func flushAll() {
        for id in streams.keys.sorted() { flush(id) }
    }

    func rstStream(_ id: UInt32, _ code: HTTP2ErrorCode) {
        var payload: [UInt8] = []
        appendUInt32(code.rawValue, to: &payload)
        Frame(.rstStream, streamID: id, payload: payload).serialize(into: &outbound)
        remember(id, resetByUs: true)
    }

    func remember(_ id: UInt32, resetByUs: Bool) {
        closedLately.append((id, resetByUs))
        if closedLately.count > HTTP2Connection.closedLatelyKept { closedLately.removeFirst() }
    }

    func windowUpdate(stream: UInt32, increment: Int) {
        var payload: [UInt8] = []
        appendUInt32(UInt32(increment), to: &payload)
        Frame(.windowUpdate, streamID: stream, payload: payload).serialize(into: &outbound)
    }

    /// A peer that does not read what it is sent cannot make us keep it.
    func checkOutbound() {
        if let cap = limits.maxOutbound, outbound.count > cap, failure == nil {
            fail(.connection(.enhanceYourCalm, "the \(role.peer) does not read what it is sent"))
        }
    }

    func fail(_ error: HTTP2Error) {
        failure = error
        inbound.removeAll()
        continuing = nil
        if case .connection(let code, let text) = error { close(code: code, debug: text) }
    }
}
