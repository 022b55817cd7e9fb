import HPACK

/// The client side of one HTTP/2 connection (RFC 9113), without I/O: bytes read from the
/// transport go into `receive`, and whatever the connection has to say accumulates in
/// `outbound` for the caller to write. This lets a blocking probe and a poll-driven loop share it.
public final class HTTP2Connection {
    public struct Limits: Sendable {
        /// SETTINGS_MAX_FRAME_SIZE we advertise (and enforce).
        public var maxFrameSize = 16_384
        /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise (and enforce on decoded lists).
        public var maxHeaderListSize = 64 << 10
        /// Per-stream receive window we advertise; the connection window is raised to match.
        public var receiveWindow = 1 << 20
        public init() {}
    }

    public enum Event: Equatable {
        /// The server's first SETTINGS frame arrived: the connection is established.
        case ready
        case headers(streamID: UInt32, fields: [HeaderField], endStream: Bool)
        case data(streamID: UInt32, bytes: [UInt8], endStream: Bool)
        /// The server reset the stream (RST_STREAM).
        case reset(streamID: UInt32, code: HTTP2ErrorCode)
        /// The server broke the protocol on one stream; we reset it with `code`, and `reason`
        /// says what was wrong.
        case streamError(streamID: UInt32, code: HTTP2ErrorCode, reason: String)
        case goAway(lastStreamID: UInt32, code: HTTP2ErrorCode, debug: String)
    }

    public static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    public let limits: Limits
    public private(set) var outbound: [UInt8] = []
    public private(set) var isReady = false

    private var inbound = ByteBuffer()
    private var encoder = HPACKEncoder()
    private var decoder: HPACKDecoder
    private var nextStreamID: UInt32 = 1
    private var peerMaxFrameSize = 16_384
    private var peerInitialWindow = 65_535
    /// SETTINGS_MAX_CONCURRENT_STREAMS from the server: how many streams we may have open.
    public private(set) var peerMaxConcurrentStreams = Int.max
    private var connectionSendWindow = 65_535
    private var connectionReceiveUnacknowledged = 0
    /// The server's GOAWAY, once one came: streams above its last stream ID were not processed.
    public private(set) var goAwayLastStreamID: UInt32? = nil

    /// A stream's state (RFC 9113 §5.1) with the flow-control windows that state still uses:
    /// what we may send while our side is open, what the server sent unacknowledged while its
    /// side is open. A closed stream is no longer in `streams`.
    private enum StreamState {
        case open(sendWindow: Int, receiveUnacknowledged: Int)
        /// We sent END_STREAM; the server's side is open.
        case halfClosedLocal(receiveUnacknowledged: Int)
        /// The server sent END_STREAM; ours is open (our request is still being sent).
        case halfClosedRemote(sendWindow: Int)

        var sendWindow: Int? {
            switch self {
            case .open(let window, _), .halfClosedRemote(let window): return window
            case .halfClosedLocal: return nil
            }
        }

        var remoteOpen: Bool {
            if case .halfClosedRemote = self { return false }
            return true
        }

        var receiveUnacknowledged: Int {
            switch self {
            case .open(_, let n), .halfClosedLocal(let n): return n
            case .halfClosedRemote: return 0
            }
        }

        func withSendWindow(_ window: Int) -> StreamState {
            switch self {
            case .open(_, let n): return .open(sendWindow: window, receiveUnacknowledged: n)
            case .halfClosedRemote: return .halfClosedRemote(sendWindow: window)
            case .halfClosedLocal: return self
            }
        }

        func withReceiveUnacknowledged(_ n: Int) -> StreamState {
            switch self {
            case .open(let window, _): return .open(sendWindow: window, receiveUnacknowledged: n)
            case .halfClosedLocal: return .halfClosedLocal(receiveUnacknowledged: n)
            case .halfClosedRemote: return self
            }
        }
    }

    private struct Stream {
        var state: StreamState
        /// Request bytes waiting for flow-control window, and whether END_STREAM follows them.
        var pending: [UInt8] = []
        var pendingEndStream = false
    }
    private var streams: [UInt32: Stream] = [:]
    /// HEADERS without END_HEADERS: the stream, its flags and the fragments so far.
    private var continuing: (streamID: UInt32, endStream: Bool, block: [UInt8])? = nil

    /// Whether a new stream may be opened now: under the server's MAX_CONCURRENT_STREAMS, before
    /// any GOAWAY, and with stream IDs left.
    public var canOpenStream: Bool {
        streams.count < peerMaxConcurrentStreams && goAwayLastStreamID == nil && nextStreamID < 0x7FFF_FFFF
    }

    /// Streams open or half closed.
    public var activeStreams: Int { streams.count }

    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.decoder = HPACKDecoder(tableSizeLimit: 4096, maxHeaderListSize: limits.maxHeaderListSize)
        outbound.append(contentsOf: HTTP2Connection.preface)
        var settings: [UInt8] = []
        func setting(_ id: SettingID, _ value: Int) {
            settings.append(contentsOf: [UInt8(id.rawValue >> 8), UInt8(id.rawValue & 0xFF)])
            appendUInt32(UInt32(value), to: &settings)
        }
        setting(.enablePush, 0)
        setting(.initialWindowSize, limits.receiveWindow)
        setting(.maxFrameSize, limits.maxFrameSize)
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

    // MARK: Sending

    /// Opens a stream with a HEADERS frame (and CONTINUATIONs when needed); returns its ID. The
    /// caller checks `canOpenStream` first.
    public func openStream(headers: [HeaderField], endStream: Bool) -> UInt32 {
        let id = nextStreamID
        nextStreamID += 2
        streams[id] = Stream(state: endStream ? .halfClosedLocal(receiveUnacknowledged: 0)
                                              : .open(sendWindow: peerInitialWindow, receiveUnacknowledged: 0))
        serializeHeaderBlock(encoder.encode(headers), streamID: id, endStream: endStream, maxFrameSize: peerMaxFrameSize, into: &outbound)
        return id
    }

    /// Queues DATA on a stream, sent as far as the flow-control windows allow now and the rest
    /// when the server's WINDOW_UPDATEs arrive.
    public func sendData(streamID: UInt32, _ bytes: [UInt8], endStream: Bool) {
        guard var stream = streams[streamID], stream.state.sendWindow != nil else { return }
        stream.pending.append(contentsOf: bytes)
        stream.pendingEndStream = endStream
        streams[streamID] = stream
        flushPending(streamID)
    }

    /// Abandons a stream with RST_STREAM (e.g. CANCEL when the caller gives up).
    public func reset(streamID: UInt32, code: HTTP2ErrorCode) {
        guard streams.removeValue(forKey: streamID) != nil else { return }
        rstStream(streamID, code)
    }

    /// Ends the connection politely: GOAWAY naming the last stream the server opened (none).
    public func close(code: HTTP2ErrorCode = .noError, debug: String = "") {
        var payload: [UInt8] = []
        appendUInt32(0, to: &payload)
        appendUInt32(code.rawValue, to: &payload)
        payload.append(contentsOf: debug.utf8)
        Frame(.goAway, streamID: 0, payload: payload).serialize(into: &outbound)
    }

    private func flushPending(_ id: UInt32) {
        guard var stream = streams[id], var window = stream.state.sendWindow else { return }
        while !stream.pending.isEmpty || stream.pendingEndStream {
            let allowed = min(stream.pending.count, window, connectionSendWindow, peerMaxFrameSize)
            if allowed == 0 && !stream.pending.isEmpty { break }
            let chunk = Array(stream.pending.prefix(allowed))
            stream.pending.removeFirst(allowed)
            window -= allowed
            connectionSendWindow -= allowed
            let last = stream.pending.isEmpty && stream.pendingEndStream
            Frame(.data, flags: last ? FrameFlags.endStream : 0, streamID: id, payload: chunk).serialize(into: &outbound)
            if last {
                stream.pendingEndStream = false
                switch stream.state {
                case .open(_, let unacknowledged): stream.state = .halfClosedLocal(receiveUnacknowledged: unacknowledged)
                case .halfClosedRemote:
                    streams[id] = nil  // both sides closed
                    return
                case .halfClosedLocal: break
                }
                streams[id] = stream
                return
            }
            if stream.pending.isEmpty { break }
        }
        stream.state = stream.state.withSendWindow(window)
        streams[id] = stream
    }

    private func rstStream(_ id: UInt32, _ code: HTTP2ErrorCode) {
        var payload: [UInt8] = []
        appendUInt32(code.rawValue, to: &payload)
        Frame(.rstStream, streamID: id, payload: payload).serialize(into: &outbound)
    }

    private func windowUpdate(stream: UInt32, increment: Int) {
        var payload: [UInt8] = []
        appendUInt32(UInt32(increment), to: &payload)
        Frame(.windowUpdate, streamID: stream, payload: payload).serialize(into: &outbound)
    }

    // MARK: Receiving

    /// Consumes bytes from the transport. Throws a connection error after queueing GOAWAY;
    /// stream errors are answered with RST_STREAM and reported as `.reset` events.
    public func receive(_ bytes: [UInt8]) throws(HTTP2Error) -> [Event] {
        inbound.append(contentsOf: bytes)
        var events: [Event] = []
        var offset = inbound.readIndex
        do throws(HTTP2Error) {
            // Checked before the frame's length: bytes from something that is not an HTTP/2
            // server (an SSH banner, TLS) are named as that, not as an oversized frame.
            if !isReady && inbound.count >= Frame.headerLength && inbound.storage[offset + 3] != FrameType.settings.rawValue {
                throw .connection(.protocolError, "server preface must start with SETTINGS, got frame type \(inbound.storage[offset + 3])")
            }
            while let (frame, used) = try Frame.parse(inbound.storage, from: offset, maxFrameSize: limits.maxFrameSize) {
                offset += used
                try handle(frame, into: &events)
            }
        } catch {
            inbound.removeAll()
            if case .connection(let code, let text) = error { close(code: code, debug: text) }
            throw error
        }
        inbound.consume(offset - inbound.readIndex)
        return events
    }

    private func handle(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
        if let pending = continuing {
            guard frame.type == FrameType.continuation.rawValue, frame.streamID == pending.streamID else {
                throw .connection(.protocolError, "expected CONTINUATION for stream \(pending.streamID)")
            }
        }
        guard let type = FrameType(rawValue: frame.type) else { return }  // unknown types are ignored
        if !isReady && type != .settings {
            throw .connection(.protocolError, "server preface must start with SETTINGS, got frame type \(frame.type)")
        }
        switch type {
        case .settings: try handleSettings(frame, into: &events)
        case .ping:
            guard frame.streamID == 0, frame.payload.count == 8 else { throw .connection(.frameSizeError, "malformed PING frame") }
            if !frame.has(FrameFlags.ack) { Frame(.ping, flags: FrameFlags.ack, streamID: 0, payload: frame.payload).serialize(into: &outbound) }
        case .goAway:
            guard frame.streamID == 0, frame.payload.count >= 8 else { throw .connection(.frameSizeError, "malformed GOAWAY frame") }
            let last = readUInt32(frame.payload, at: 0) & 0x7FFF_FFFF
            let code = HTTP2ErrorCode(rawValue: readUInt32(frame.payload, at: 4))
            // A graceful shutdown sends a first GOAWAY naming the largest ID, then the real one.
            goAwayLastStreamID = min(goAwayLastStreamID ?? last, last)
            for id in streams.keys where id > last { streams[id] = nil }  // not processed: the caller may retry
            events.append(.goAway(lastStreamID: last, code: code, debug: String(decoding: frame.payload[8...].prefix(256), as: UTF8.self)))
        case .windowUpdate:
            guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "malformed WINDOW_UPDATE frame") }
            let increment = Int(readUInt32(frame.payload, at: 0) & 0x7FFF_FFFF)
            if frame.streamID == 0 {
                guard increment > 0 else { throw .connection(.protocolError, "WINDOW_UPDATE with zero increment") }
                connectionSendWindow += increment
                guard connectionSendWindow <= Int(Int32.max) else { throw .connection(.flowControlError, "connection window overflow") }
                for id in streams.keys.sorted() { flushPending(id) }
            } else if var stream = streams[frame.streamID] {
                guard increment > 0 else { return streamError(frame.streamID, .protocolError, "WINDOW_UPDATE with zero increment", &events) }
                guard let window = stream.state.sendWindow else { return }  // our side is done: nothing to send
                guard window + increment <= Int(Int32.max) else {
                    return streamError(frame.streamID, .flowControlError, "stream window overflow", &events)
                }
                stream.state = stream.state.withSendWindow(window + increment)
                streams[frame.streamID] = stream
                flushPending(frame.streamID)
            }
        case .rstStream:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "RST_STREAM on stream 0") }
            guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "malformed RST_STREAM frame") }
            try requireOpened(frame.streamID)
            if streams.removeValue(forKey: frame.streamID) != nil {
                events.append(.reset(streamID: frame.streamID, code: HTTP2ErrorCode(rawValue: readUInt32(frame.payload, at: 0))))
            }
        case .headers:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "HEADERS on stream 0") }
            try requireOpened(frame.streamID)
            var payload = try unpad(frame)[...]
            if frame.has(FrameFlags.priority) {
                guard payload.count >= 5 else { throw .connection(.frameSizeError, "HEADERS too short for its priority fields") }
                payload = payload.dropFirst(5)
            }
            continuing = (frame.streamID, frame.has(FrameFlags.endStream), Array(payload))
            if frame.has(FrameFlags.endHeaders) { try finishHeaders(into: &events) }
        case .continuation:
            guard var pending = continuing else { throw .connection(.protocolError, "CONTINUATION without HEADERS") }
            pending.block.append(contentsOf: frame.payload)
            if pending.block.count > limits.maxHeaderListSize {
                throw .connection(.enhanceYourCalm, "header block larger than \(limits.maxHeaderListSize) bytes")
            }
            continuing = pending
            if frame.has(FrameFlags.endHeaders) { try finishHeaders(into: &events) }
        case .data:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "DATA on stream 0") }
            try requireOpened(frame.streamID)
            connectionReceiveUnacknowledged += frame.payload.count
            if connectionReceiveUnacknowledged > limits.receiveWindow {
                throw .connection(.flowControlError, "server exceeded the connection flow-control window")
            }
            if connectionReceiveUnacknowledged >= limits.receiveWindow / 2 {
                windowUpdate(stream: 0, increment: connectionReceiveUnacknowledged)
                connectionReceiveUnacknowledged = 0
            }
            let body = try unpad(frame)
            guard var stream = streams[frame.streamID], stream.state.remoteOpen else { return }
            var unacknowledged = stream.state.receiveUnacknowledged + frame.payload.count
            if unacknowledged > limits.receiveWindow {
                return streamError(frame.streamID, .flowControlError, "server exceeded the stream flow-control window", &events)
            }
            let end = frame.has(FrameFlags.endStream)
            if !end && unacknowledged >= limits.receiveWindow / 2 {
                windowUpdate(stream: frame.streamID, increment: unacknowledged)
                unacknowledged = 0
            }
            if end {
                closeRemote(frame.streamID, &stream)
            } else {
                stream.state = stream.state.withReceiveUnacknowledged(unacknowledged)
                streams[frame.streamID] = stream
            }
            events.append(.data(streamID: frame.streamID, bytes: body, endStream: end))
        case .pushPromise:
            throw .connection(.protocolError, "PUSH_PROMISE received although push is disabled")
        case .priority:
            // RFC 9113 makes a wrong length a stream error; like Go's HTTP/2 framer, which the
            // reference tool uses, we end the connection: a server sending it is broken.
            guard frame.streamID != 0 else { throw .connection(.protocolError, "PRIORITY on stream 0") }
            guard frame.payload.count == 5 else {
                throw .connection(.frameSizeError, "PRIORITY frame of \(frame.payload.count) bytes (want 5)")
            }
        }
    }

    private func handleSettings(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
        guard frame.streamID == 0 else { throw .connection(.protocolError, "SETTINGS on a stream") }
        if frame.has(FrameFlags.ack) {
            guard frame.payload.isEmpty else { throw .connection(.frameSizeError, "SETTINGS ACK with a payload") }
            return
        }
        guard frame.payload.count % 6 == 0 else { throw .connection(.frameSizeError, "SETTINGS payload not a multiple of 6") }
        var i = 0
        while i < frame.payload.count {
            let id = UInt16(frame.payload[i]) << 8 | UInt16(frame.payload[i + 1])
            let value = readUInt32(frame.payload, at: i + 2)
            i += 6
            switch SettingID(rawValue: id) {
            case .initialWindowSize:
                guard value <= UInt32(Int32.max) else { throw .connection(.flowControlError, "SETTINGS_INITIAL_WINDOW_SIZE too large") }
                let delta = Int(value) - peerInitialWindow
                peerInitialWindow = Int(value)
                for (id, stream) in streams {
                    guard let window = stream.state.sendWindow else { continue }
                    guard window + delta <= Int(Int32.max) else { throw .connection(.flowControlError, "stream window overflow") }
                    streams[id]!.state = stream.state.withSendWindow(window + delta)
                }
            case .maxFrameSize:
                guard value >= 16_384 && value <= 16_777_215 else { throw .connection(.protocolError, "SETTINGS_MAX_FRAME_SIZE out of range") }
                peerMaxFrameSize = Int(value)
            case .enablePush:
                guard value <= 1 else { throw .connection(.protocolError, "SETTINGS_ENABLE_PUSH not 0 or 1") }
            case .maxConcurrentStreams:
                peerMaxConcurrentStreams = Int(value)
            default:
                break  // Our encoder never indexes, so HEADER_TABLE_SIZE does not concern it.
            }
        }
        Frame(.settings, flags: FrameFlags.ack, streamID: 0).serialize(into: &outbound)
        for id in streams.keys.sorted() { flushPending(id) }
        if !isReady {
            isReady = true
            events.append(.ready)
        }
    }

    private func finishHeaders(into events: inout [Event]) throws(HTTP2Error) {
        guard let pending = continuing else { return }
        continuing = nil
        let fields: [HeaderField]
        do {
            fields = try decoder.decode(pending.block)
        } catch {
            throw .connection(.compressionError, "cannot decode response headers: \(error)")
        }
        guard var stream = streams[pending.streamID], stream.state.remoteOpen else { return }
        if let problem = HTTP2Connection.malformedField(fields) {
            // A malformed response (RFC 9113 §8.1.1) is a stream error.
            return streamError(pending.streamID, .protocolError, problem, &events)
        }
        if pending.endStream { closeRemote(pending.streamID, &stream) }
        events.append(.headers(streamID: pending.streamID, fields: fields, endStream: pending.endStream))
    }

    /// What makes a decoded header list malformed (RFC 9113 §8.2.1, as Go's HTTP/2 framer
    /// checks it): a name that is not a lower-case token, a pseudo-header after a regular field,
    /// a value with control characters (HTAB aside). Nil when the list is well formed.
    static func malformedField(_ fields: [HeaderField]) -> String? {
        var regularSeen = false
        for field in fields {
            var name = field.name.utf8[...]
            if name.first == UInt8(ascii: ":") {
                if regularSeen { return "pseudo-header field \(quoted(field.name)) after a regular field" }
                name = name.dropFirst()
            } else {
                regularSeen = true
            }
            if name.isEmpty || !name.allSatisfy(isLowerCaseTokenByte) {
                return "invalid header field name \(quoted(field.name))"
            }
            if field.value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return "invalid header field value for \(quoted(field.name))"
            }
        }
        return nil
    }

    /// RFC 9110's token characters, less the upper-case letters HTTP/2 forbids in names.
    private static func isLowerCaseTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): return true
        default: return false
        }
    }

    /// The server ended its side of the stream: half closed, or closed when ours is done too.
    private func closeRemote(_ id: UInt32, _ stream: inout Stream) {
        switch stream.state {
        case .open(let window, _):
            stream.state = .halfClosedRemote(sendWindow: window)
            streams[id] = stream
        case .halfClosedLocal, .halfClosedRemote:
            streams[id] = nil
        }
    }

    /// A frame for a stream we never opened (server-initiated or beyond ours) is a protocol error.
    private func requireOpened(_ id: UInt32) throws(HTTP2Error) {
        if id % 2 == 0 || id >= nextStreamID {
            throw .connection(.protocolError, "frame on stream \(id), which was never opened")
        }
    }

    private func unpad(_ frame: Frame) throws(HTTP2Error) -> [UInt8] {
        guard frame.has(FrameFlags.padded) else { return frame.payload }
        guard let padLength = frame.payload.first, Int(padLength) < frame.payload.count else {
            throw .connection(.protocolError, "padding longer than the frame")
        }
        return Array(frame.payload[1..<(frame.payload.count - Int(padLength))])
    }

    private func streamError(_ id: UInt32, _ code: HTTP2ErrorCode, _ text: String, _ events: inout [Event]) {
        streams[id] = nil
        rstStream(id, code)
        events.append(.streamError(streamID: id, code: code, reason: text))
    }
}
