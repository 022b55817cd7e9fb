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
    public private(set) var outbound: [UInt8] = []
    /// The peer's SETTINGS came: the connection is established.
    public private(set) var isReady = false
    /// The connection error that ended the connection (GOAWAY queued): nothing more is read.
    public private(set) var failure: HTTP2Error?
    /// The peer's GOAWAY, once one came: our streams above its last stream ID were not processed.
    public private(set) var goAwayLastStreamID: UInt32? = nil
    /// SETTINGS_MAX_CONCURRENT_STREAMS from the peer: how many streams we may open.
    public private(set) var peerMaxConcurrentStreams = Int.max
    /// SETTINGS_MAX_HEADER_LIST_SIZE from the peer, once it said one.
    public private(set) var peerMaxHeaderListSize: Int? = nil

    private var inbound = ByteBuffer()
    /// A server waits for the client's preface before any frame.
    private var awaitingPreface: Bool
    private var encoder = HPACKEncoder()
    private var decoder: HPACKDecoder
    private var nextLocalStreamID: UInt32
    /// The highest stream ID the peer opened.
    private var lastPeerStreamID: UInt32 = 0
    private var peerMaxFrameSize = 16_384
    private var peerInitialWindow = 65_535
    private var connectionSendWindow = 65_535
    private var connectionReceiveUnacknowledged = 0
    private var peerResets = 0
    private var streams: [UInt32: HTTP2Stream] = [:]
    /// Streams closed lately, and whether we reset them: frames already in flight on a stream we
    /// reset are ignored; on one closed otherwise they are STREAM_CLOSED (§5.1). Older IDs below
    /// the last one opened count as never opened.
    private var closedLately: [(id: UInt32, resetByUs: Bool)] = []
    private static let closedLatelyKept = 128
    /// HEADERS without END_HEADERS: the stream, its flags and the fragments so far.
    private var continuing: (streamID: UInt32, endStream: Bool, block: [UInt8])? = nil

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

    private func enqueue(_ id: UInt32, _ segment: HTTP2Stream.Segment) {
        guard failure == nil, var stream = streams[id], stream.state.sendWindow != nil else { return }
        stream.queue.append(segment)
        streams[id] = stream
        flush(id)
        checkOutbound()
    }

    /// Sends what waits on a stream, DATA as far as the windows allow (none while a window is
    /// zero or below), and closes our side at END_STREAM.
    private func flush(_ id: UInt32) {
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

    private func flushAll() {
        for id in streams.keys.sorted() { flush(id) }
    }

    private func rstStream(_ id: UInt32, _ code: HTTP2ErrorCode) {
        var payload: [UInt8] = []
        appendUInt32(code.rawValue, to: &payload)
        Frame(.rstStream, streamID: id, payload: payload).serialize(into: &outbound)
        remember(id, resetByUs: true)
    }

    private func remember(_ id: UInt32, resetByUs: Bool) {
        closedLately.append((id, resetByUs))
        if closedLately.count > HTTP2Connection.closedLatelyKept { closedLately.removeFirst() }
    }

    private func windowUpdate(stream: UInt32, increment: Int) {
        var payload: [UInt8] = []
        appendUInt32(UInt32(increment), to: &payload)
        Frame(.windowUpdate, streamID: stream, payload: payload).serialize(into: &outbound)
    }

    /// A peer that does not read what it is sent cannot make us keep it.
    private func checkOutbound() {
        if let cap = limits.maxOutbound, outbound.count > cap, failure == nil {
            fail(.connection(.enhanceYourCalm, "the \(role.peer) does not read what it is sent"))
        }
    }

    private func fail(_ error: HTTP2Error) {
        failure = error
        inbound.removeAll()
        continuing = nil
        if case .connection(let code, let text) = error { close(code: code, debug: text) }
    }

    // MARK: Receiving

    /// Consumes bytes from the transport. A connection error queues GOAWAY, is kept in
    /// `failure` and thrown; later bytes are ignored. Stream errors are answered with RST_STREAM
    /// and reported as events.
    public func receive(_ bytes: [UInt8]) throws(HTTP2Error) -> [Event] {
        guard failure == nil else { return [] }
        inbound.append(contentsOf: bytes)
        var events: [Event] = []
        var offset = inbound.readIndex
        do throws(HTTP2Error) {
            if awaitingPreface {
                let preface = HTTP2Connection.preface
                let have = min(inbound.count, preface.count)
                guard inbound.storage[offset..<(offset + have)].elementsEqual(preface.prefix(have)) else {
                    throw .connection(.protocolError, "not an HTTP/2 connection preface")
                }
                guard have == preface.count else { return [] }
                offset += preface.count
                awaitingPreface = false
            }
            // Checked before the frame's length: bytes from something that is not an HTTP/2
            // peer (an SSH banner, TLS) are named as that, not as an oversized frame.
            if !isReady && inbound.storage.count - offset >= Frame.headerLength && inbound.storage[offset + 3] != FrameType.settings.rawValue {
                throw .connection(.protocolError, "\(role.peer) preface must start with SETTINGS, got frame type \(inbound.storage[offset + 3])")
            }
            while let (frame, used) = try Frame.parse(inbound.storage, from: offset, maxFrameSize: limits.maxFrameSize) {
                offset += used
                try handle(frame, into: &events)
            }
            if let cap = limits.maxOutbound, outbound.count > cap {
                throw .connection(.enhanceYourCalm, "the \(role.peer) does not read what it is sent")
            }
        } catch {
            fail(error)
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
            throw .connection(.protocolError, "\(role.peer) preface must start with SETTINGS, got frame type \(frame.type)")
        }
        switch type {
        case .settings: try handleSettings(frame, into: &events)
        case .ping:
            guard frame.streamID == 0 else { throw .connection(.protocolError, "PING on a stream") }
            guard frame.payload.count == 8 else { throw .connection(.frameSizeError, "malformed PING frame") }
            if !frame.has(FrameFlags.ack) { Frame(.ping, flags: FrameFlags.ack, streamID: 0, payload: frame.payload).serialize(into: &outbound) }
        case .goAway:
            guard frame.streamID == 0 else { throw .connection(.protocolError, "GOAWAY on a stream") }
            guard frame.payload.count >= 8 else { throw .connection(.frameSizeError, "malformed GOAWAY frame") }
            let last = readUInt32(frame.payload, at: 0) & 0x7FFF_FFFF
            let code = HTTP2ErrorCode(rawValue: readUInt32(frame.payload, at: 4))
            // A graceful shutdown sends a first GOAWAY naming the largest ID, then the real one.
            goAwayLastStreamID = min(goAwayLastStreamID ?? last, last)
            for id in streams.keys where id > last && !peerInitiated(id) { streams[id] = nil }  // not processed: may be retried
            events.append(.goAway(lastStreamID: last, code: code, debug: String(decoding: frame.payload[8...].prefix(256), as: UTF8.self)))
        case .windowUpdate:
            try handleWindowUpdate(frame, into: &events)
        case .rstStream:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "RST_STREAM on stream 0") }
            guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "malformed RST_STREAM frame") }
            try requireNotIdle(frame)
            peerResets += 1
            if let cap = limits.maxPeerResets, peerResets > cap { throw .connection(.enhanceYourCalm, "too many streams reset") }
            if streams.removeValue(forKey: frame.streamID) != nil {
                remember(frame.streamID, resetByUs: false)
                events.append(.reset(streamID: frame.streamID, code: HTTP2ErrorCode(rawValue: readUInt32(frame.payload, at: 0))))
            }
        case .headers:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "HEADERS on stream 0") }
            var payload = try unpad(frame)[...]
            if frame.has(FrameFlags.priority) {
                guard payload.count >= 5 else { throw .connection(.frameSizeError, "HEADERS too short for its priority fields") }
                payload = payload.dropFirst(5)
            }
            try requireBlockSize(payload.count)
            continuing = (frame.streamID, frame.has(FrameFlags.endStream), Array(payload))
            if frame.has(FrameFlags.endHeaders) { try finishHeaders(into: &events) }
        case .continuation:
            guard var pending = continuing else { throw .connection(.protocolError, "CONTINUATION without HEADERS") }
            pending.block.append(contentsOf: frame.payload)
            try requireBlockSize(pending.block.count)
            continuing = pending
            if frame.has(FrameFlags.endHeaders) { try finishHeaders(into: &events) }
        case .data:
            try handleData(frame, into: &events)
        case .pushPromise:
            throw .connection(.protocolError, role == .client ? "PUSH_PROMISE received although push is disabled" : "PUSH_PROMISE from a client")
        case .priority:
            // RFC 9113 makes a wrong length a stream error; like Go's HTTP/2 framer, we end the
            // connection: a peer sending it is broken. PRIORITY is otherwise ignored (§5.3.2).
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
                // Every stream's window moves by the difference, below zero if need be (§6.9.2).
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
            case .maxHeaderListSize:
                peerMaxHeaderListSize = Int(value)
            default:
                break  // Our encoder never indexes, so HEADER_TABLE_SIZE does not concern it.
            }
        }
        Frame(.settings, flags: FrameFlags.ack, streamID: 0).serialize(into: &outbound)
        flushAll()
        if !isReady {
            isReady = true
            events.append(.ready)
        }
    }

    private func handleWindowUpdate(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
        guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "malformed WINDOW_UPDATE frame") }
        let increment = Int(readUInt32(frame.payload, at: 0) & 0x7FFF_FFFF)
        if frame.streamID == 0 {
            guard increment > 0 else { throw .connection(.protocolError, "WINDOW_UPDATE with zero increment") }
            guard connectionSendWindow + increment <= Int(Int32.max) else { throw .connection(.flowControlError, "connection window overflow") }
            connectionSendWindow += increment
            flushAll()
            return
        }
        try requireNotIdle(frame)
        // A stream that is closed may still see a WINDOW_UPDATE sent before it heard so (§5.1).
        guard var stream = streams[frame.streamID] else { return }
        guard increment > 0 else { return streamError(frame.streamID, .protocolError, "WINDOW_UPDATE with zero increment", &events) }
        // Our side is done: nothing left to send, the window no longer matters.
        guard let window = stream.state.sendWindow else { return }
        guard window + increment <= Int(Int32.max) else {
            return streamError(frame.streamID, .flowControlError, "stream window overflow", &events)
        }
        stream.state = stream.state.withSendWindow(window + increment)
        streams[frame.streamID] = stream
        flush(frame.streamID)
    }

    private func handleData(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
        guard frame.streamID != 0 else { throw .connection(.protocolError, "DATA on stream 0") }
        try requireNotIdle(frame)
        // The whole frame counts against the connection's window, whatever becomes of it (§6.9).
        connectionReceiveUnacknowledged += frame.payload.count
        if connectionReceiveUnacknowledged > limits.receiveWindow {
            throw .connection(.flowControlError, "\(role.peer) exceeded the connection flow-control window")
        }
        if connectionReceiveUnacknowledged >= limits.receiveWindow / 2 {
            windowUpdate(stream: 0, increment: connectionReceiveUnacknowledged)
            connectionReceiveUnacknowledged = 0
        }
        let body = try unpad(frame)
        guard var stream = streams[frame.streamID], stream.state.remoteOpen else {
            return try closedStream(frame.streamID, "DATA", &events)
        }
        var unacknowledged = stream.state.receiveUnacknowledged + frame.payload.count
        if unacknowledged > limits.receiveWindow {
            return streamError(frame.streamID, .flowControlError, "\(role.peer) exceeded the stream flow-control window", &events)
        }
        let end = frame.has(FrameFlags.endStream)
        stream.receivedLength += body.count
        if let declared = stream.declaredLength, stream.receivedLength > declared || (end && stream.receivedLength != declared) {
            return streamError(frame.streamID, .protocolError, "content-length \(declared) but \(stream.receivedLength) bytes of DATA", &events)
        }
        if !end && unacknowledged >= limits.receiveWindow / 2 {
            windowUpdate(stream: frame.streamID, increment: unacknowledged)
            unacknowledged = 0
        }
        if end {
            closeRemote(frame.streamID, stream)
        } else {
            stream.state = stream.state.withReceiveUnacknowledged(unacknowledged)
            streams[frame.streamID] = stream
        }
        events.append(.data(streamID: frame.streamID, bytes: body, endStream: end))
    }

    private func requireBlockSize(_ count: Int) throws(HTTP2Error) {
        if count > limits.maxHeaderListSize {
            throw .connection(.enhanceYourCalm, "header block larger than \(limits.maxHeaderListSize) bytes")
        }
    }

    private func finishHeaders(into events: inout [Event]) throws(HTTP2Error) {
        guard let pending = continuing else { return }
        continuing = nil
        let id = pending.streamID
        // Decoded whatever becomes of the stream: the HPACK table is the connection's.
        let fields: [HeaderField]
        do {
            fields = try decoder.decode(pending.block)
        } catch {
            throw .connection(.compressionError, "cannot decode \(role == .client ? "response" : "request") headers: \(error)")
        }
        if peerInitiated(id) && id > lastPeerStreamID {
            // Only a client opens streams: we disable push.
            guard role == .server else { throw .connection(.protocolError, "frame on stream \(id), which was never opened") }
            return try openPeerStream(id, fields, endStream: pending.endStream, &events)
        }
        if !peerInitiated(id) && id >= nextLocalStreamID {
            throw .connection(.protocolError, "frame on stream \(id), which was never opened")
        }
        guard var stream = streams[id], stream.state.remoteOpen else {
            return try closedStream(id, "HEADERS", &events)
        }
        let first = stream.peerHeaderBlocks == 0
        stream.peerHeaderBlocks += 1
        // A client's rules for responses are the general ones (what Go checks); a server holds a
        // request's trailers to §8.1.
        let problem = role == .server && !first ? HTTP2FieldRules.malformedTrailers(fields, endStream: pending.endStream)
            : HTTP2FieldRules.malformedField(fields)
        if let problem { return streamError(id, .protocolError, problem, &events) }
        if pending.endStream {
            if let declared = stream.declaredLength, declared != stream.receivedLength {
                return streamError(id, .protocolError, "content-length \(declared) but \(stream.receivedLength) bytes of DATA", &events)
            }
            closeRemote(id, stream)
        } else {
            streams[id] = stream
        }
        events.append(.headers(streamID: id, fields: fields, endStream: pending.endStream))
    }

    /// A server's new stream: a request's head, checked (§8.3.1), or refused over the limit.
    private func openPeerStream(_ id: UInt32, _ fields: [HeaderField], endStream: Bool, _ events: inout [Event]) throws(HTTP2Error) {
        lastPeerStreamID = id
        if let cap = limits.maxConcurrentStreams, streams.count >= cap {
            rstStream(id, .refusedStream)
            return
        }
        var stream = HTTP2Stream(state: .open(sendWindow: peerInitialWindow, receiveUnacknowledged: 0))
        stream.peerHeaderBlocks = 1
        streams[id] = stream
        let (problem, declared) = HTTP2FieldRules.malformedRequest(fields)
        if let problem { return streamError(id, .protocolError, problem, &events) }
        if endStream && (declared ?? 0) != 0 {
            return streamError(id, .protocolError, "content-length \(declared!) but 0 bytes of DATA", &events)
        }
        stream.declaredLength = declared
        if endStream {
            closeRemote(id, stream)
        } else {
            streams[id] = stream
        }
        events.append(.headers(streamID: id, fields: fields, endStream: endStream))
    }

    /// A frame that only an open stream may carry, on a stream whose peer's side is closed:
    /// ignored when we reset it lately (it was in flight), a stream error STREAM_CLOSED when it
    /// is still ours to answer or its DATA comes after it closed (§5.1), and a connection error
    /// for HEADERS on a closed stream or an ID that is neither (an older ID never opened, §5.1.1,
    /// or one closed long ago).
    private func closedStream(_ id: UInt32, _ kind: String, _ events: inout [Event]) throws(HTTP2Error) {
        if streams[id] != nil {
            return streamError(id, .streamClosed, "\(kind) after the \(role.peer) ended the stream", &events)
        }
        switch closedLately.last(where: { $0.id == id })?.resetByUs {
        case true?: return
        case false?:
            // New headers on a stream both sides ended would start it again: the peer has lost
            // track of the connection's state (§5.1).
            if kind == "HEADERS" { throw .connection(.streamClosed, "HEADERS on stream \(id), which is closed") }
            rstStream(id, .streamClosed)
        case nil: throw .connection(.protocolError, "\(kind) on stream \(id), which is closed or was never opened")
        }
    }

    /// The peer ended its side of the stream: half closed, or closed when ours is done too.
    private func closeRemote(_ id: UInt32, _ stream: HTTP2Stream) {
        guard let next = stream.state.closingRemote else {
            streams[id] = nil
            remember(id, resetByUs: false)
            return
        }
        var stream = stream
        stream.state = next
        streams[id] = stream
    }

    /// Whether the peer opens streams with this ID (odd IDs are the client's).
    private func peerInitiated(_ id: UInt32) -> Bool { (id % 2 == 1) == (role == .server) }

    /// A frame other than HEADERS or PRIORITY on a stream that was never opened is a protocol
    /// error (§5.1, idle).
    private func requireNotIdle(_ frame: Frame) throws(HTTP2Error) {
        let id = frame.streamID
        if peerInitiated(id) ? id > lastPeerStreamID : id >= nextLocalStreamID {
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
