import HPACK

/// The server side of one HTTP/2 connection (RFC 9113), as much as a health endpoint needs and
/// no more, without I/O: a request is one header block and a small body, a response a few
/// frames. It faces whoever can reach the port, so everything it keeps is bounded: streams at
/// once, the header list, a request body, what waits unsent, and resets (rapid reset, CVE-2023-44487).
public final class HTTP2ServerConnection {
    public struct Limits: Sendable {
        public var maxConcurrentStreams = 16
        public var maxHeaderListSize = 8 << 10
        public var maxRequestBody = 16 << 10
        /// Streams a client may reset over the connection's life before it is told to go away.
        public var maxResets = 128
        /// Bytes waiting unsent (answers to PINGs and SETTINGS a client sends without reading):
        /// past this, the connection is ended.
        public var maxOutbound = 256 << 10
        public init() {}
    }

    public enum Event: Equatable {
        /// A complete request: its header fields and its body.
        case request(streamID: UInt32, fields: [HeaderField], body: [UInt8])
        /// The client reset a stream whose response may still be coming.
        case cancelled(streamID: UInt32)
    }

    public let limits: Limits
    public private(set) var outbound: [UInt8] = []
    /// Set once the connection is ending: GOAWAY is queued (or the client's came), and once
    /// `outbound` is written the connection is to be closed.
    public private(set) var closing: String?

    private var inbound = ByteBuffer()
    private var sawPreface = false
    private var decoder: HPACKDecoder
    private var encoder = HPACKEncoder()
    private var lastStreamID: UInt32 = 0
    private var peerInitialWindow = 65_535
    private var peerMaxFrameSize = 16_384
    private var connectionSendWindow = 65_535
    private var receivedUnacknowledged = 0
    private var resets = 0

    /// A stream's state with what that state still needs: the request as it arrives while the
    /// client's side is open; once it is closed (half-closed remote), our window and what waits for it.
    private enum StreamState {
        case receiving(fields: [HeaderField], body: [UInt8])
        case responding(sendWindow: Int, queue: [Segment])
    }

    private enum Segment {
        case data([UInt8], endStream: Bool)
        case headers([HeaderField], endStream: Bool)
    }

    private var streams: [UInt32: StreamState] = [:]
    private var continuing: (streamID: UInt32, endStream: Bool, block: [UInt8])? = nil

    public init(limits: Limits = Limits()) {
        self.limits = limits
        decoder = HPACKDecoder(tableSizeLimit: 4096, maxHeaderListSize: limits.maxHeaderListSize)
        var settings: [UInt8] = []
        for (id, value) in [(SettingID.maxConcurrentStreams, limits.maxConcurrentStreams), (.maxHeaderListSize, limits.maxHeaderListSize),
                            (.enablePush, 0)] {
            settings.append(contentsOf: [UInt8(id.rawValue >> 8), UInt8(id.rawValue & 0xFF)])
            appendUInt32(UInt32(value), to: &settings)
        }
        Frame(.settings, streamID: 0, payload: settings).serialize(into: &outbound)
    }

    public var openStreams: Int { streams.count }

    public func takeOutbound() -> [UInt8] {
        defer { outbound.removeAll(keepingCapacity: true) }
        return outbound
    }

    // MARK: Receiving

    /// Takes bytes read from the client and returns what they complete. A protocol error ends
    /// the connection (`closing`): the rest is ignored.
    public func receive(_ bytes: [UInt8]) -> [Event] {
        guard closing == nil else { return [] }
        inbound.append(contentsOf: bytes)
        var events: [Event] = []
        do throws(HTTP2Error) {
            if !sawPreface {
                let preface = HTTP2Connection.preface
                let have = min(inbound.count, preface.count)
                let matches = inbound.withUnsafeBytes { raw in raw.prefix(have).elementsEqual(preface.prefix(have)) }
                guard matches else { throw HTTP2Error.connection(.protocolError, "not an HTTP/2 connection preface") }
                guard inbound.count >= preface.count else { return [] }
                inbound.consume(preface.count)
                sawPreface = true
            }
            while inbound.count >= Frame.headerLength {
                // Only the frame's own bytes are copied out, however much is buffered.
                let length = inbound.withUnsafeBytes { Int($0[0]) << 16 | Int($0[1]) << 8 | Int($0[2]) }
                guard length <= 16_384 else { throw HTTP2Error.connection(.frameSizeError, "frame of \(length) bytes exceeds the maximum of 16384") }
                guard inbound.count >= Frame.headerLength + length else { break }
                let frame = inbound.withUnsafeBytes { raw in
                    Frame(type: raw[3], flags: raw[4],
                          streamID: (UInt32(raw[5]) << 24 | UInt32(raw[6]) << 16 | UInt32(raw[7]) << 8 | UInt32(raw[8])) & 0x7FFF_FFFF,
                          payload: Array(raw[Frame.headerLength..<(Frame.headerLength + length)]))
                }
                inbound.consume(Frame.headerLength + length)
                try handle(frame, into: &events)
                if closing != nil { break }
            }
        } catch {
            fail(error)
        }
        if outbound.count > limits.maxOutbound { fail(.connection(.enhanceYourCalm, "the client does not read what it is sent")) }
        return events
    }

    private func fail(_ error: HTTP2Error) {
        guard closing == nil else { return }
        let code: HTTP2ErrorCode
        switch error { case .connection(let c, _): code = c }
        goAway(code, debug: error.description)
        closing = error.description
    }

    private func handle(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
        if let pending = continuing {
            guard frame.type == FrameType.continuation.rawValue, frame.streamID == pending.streamID else {
                throw .connection(.protocolError, "expected CONTINUATION")
            }
            let block = pending.block + frame.payload
            guard block.count <= limits.maxHeaderListSize * 2 else { throw .connection(.enhanceYourCalm, "header block too large") }
            if frame.has(FrameFlags.endHeaders) {
                continuing = nil
                try headerBlock(streamID: pending.streamID, block, endStream: pending.endStream, into: &events)
            } else {
                continuing = (pending.streamID, pending.endStream, block)
            }
            return
        }
        guard let type = FrameType(rawValue: frame.type) else { return }  // unknown types are ignored
        switch type {
        case .headers:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "HEADERS on stream 0") }
            var payload = try unpadded(frame)[...]
            if frame.has(FrameFlags.priority) {
                guard payload.count >= 5 else { throw .connection(.frameSizeError, "HEADERS too short for its priority") }
                payload = payload.dropFirst(5)
            }
            let block = Array(payload)
            guard block.count <= limits.maxHeaderListSize * 2 else { throw .connection(.enhanceYourCalm, "header block too large") }
            if frame.has(FrameFlags.endHeaders) {
                try headerBlock(streamID: frame.streamID, block, endStream: frame.has(FrameFlags.endStream), into: &events)
            } else {
                continuing = (frame.streamID, frame.has(FrameFlags.endStream), block)
            }
        case .data:
            guard frame.streamID != 0 else { throw .connection(.protocolError, "DATA on stream 0") }
            acknowledge(frame.payload.count)
            let body = try unpadded(frame)
            guard case .receiving(let fields, var sofar)? = streams[frame.streamID] else {
                if frame.streamID > lastStreamID { throw .connection(.protocolError, "DATA on an idle stream") }
                rstStream(frame.streamID, .streamClosed)
                return
            }
            sofar.append(contentsOf: body)
            if sofar.count > limits.maxRequestBody {
                streams[frame.streamID] = nil
                rstStream(frame.streamID, .enhanceYourCalm)
                return
            }
            if frame.has(FrameFlags.endStream) {
                streams[frame.streamID] = .responding(sendWindow: peerInitialWindow, queue: [])
                events.append(.request(streamID: frame.streamID, fields: fields, body: sofar))
            } else {
                streams[frame.streamID] = .receiving(fields: fields, body: sofar)
            }
        case .settings:
            guard frame.streamID == 0 else { throw .connection(.protocolError, "SETTINGS on a stream") }
            if frame.has(FrameFlags.ack) { return }
            guard frame.payload.count % 6 == 0 else { throw .connection(.frameSizeError, "SETTINGS of a bad length") }
            var index = 0
            while index < frame.payload.count {
                let id = UInt16(frame.payload[index]) << 8 | UInt16(frame.payload[index + 1])
                let value = Int(readUInt32(frame.payload, at: index + 2))
                index += 6
                switch SettingID(rawValue: id) {
                case .initialWindowSize?:
                    guard value <= 0x7FFF_FFFF else { throw .connection(.flowControlError, "initial window too large") }
                    let delta = value - peerInitialWindow
                    peerInitialWindow = value
                    for (id, state) in streams {
                        if case .responding(let window, let queue) = state { streams[id] = .responding(sendWindow: window + delta, queue: queue) }
                    }
                case .maxFrameSize?:
                    guard (16_384...16_777_215).contains(value) else { throw .connection(.protocolError, "bad SETTINGS_MAX_FRAME_SIZE") }
                    peerMaxFrameSize = value
                default:
                    break
                }
            }
            Frame(.settings, flags: FrameFlags.ack, streamID: 0).serialize(into: &outbound)
            flushAll()
        case .ping:
            guard frame.streamID == 0, frame.payload.count == 8 else { throw .connection(.protocolError, "malformed PING") }
            if !frame.has(FrameFlags.ack) { Frame(.ping, flags: FrameFlags.ack, streamID: 0, payload: frame.payload).serialize(into: &outbound) }
        case .rstStream:
            guard frame.streamID != 0, frame.payload.count == 4 else { throw .connection(.protocolError, "malformed RST_STREAM") }
            if frame.streamID > lastStreamID { throw .connection(.protocolError, "RST_STREAM on an idle stream") }
            resets += 1
            if resets > limits.maxResets { throw .connection(.enhanceYourCalm, "too many streams reset") }
            if streams.removeValue(forKey: frame.streamID) != nil { events.append(.cancelled(streamID: frame.streamID)) }
        case .windowUpdate:
            guard frame.payload.count == 4 else { throw .connection(.frameSizeError, "WINDOW_UPDATE of a bad length") }
            let increment = Int(readUInt32(frame.payload, at: 0) & 0x7FFF_FFFF)
            guard increment > 0 else { throw .connection(.protocolError, "WINDOW_UPDATE of 0") }
            if frame.streamID == 0 {
                connectionSendWindow += increment
                guard connectionSendWindow <= 0x7FFF_FFFF else { throw .connection(.flowControlError, "connection window overflow") }
            } else if case .responding(let window, let queue)? = streams[frame.streamID] {
                guard window + increment <= 0x7FFF_FFFF else { throw .connection(.flowControlError, "stream window overflow") }
                streams[frame.streamID] = .responding(sendWindow: window + increment, queue: queue)
            }
            flushAll()
        case .goAway:
            closing = "the client sent GOAWAY"
        case .pushPromise:
            throw .connection(.protocolError, "PUSH_PROMISE from a client")
        case .continuation:
            throw .connection(.protocolError, "CONTINUATION without HEADERS")
        case .priority:
            guard frame.payload.count == 5 else { throw .connection(.frameSizeError, "PRIORITY of a bad length") }
        }
    }

    private func unpadded(_ frame: Frame) throws(HTTP2Error) -> [UInt8] {
        guard frame.has(FrameFlags.padded) else { return frame.payload }
        guard let padding = frame.payload.first, Int(padding) < frame.payload.count else {
            throw .connection(.protocolError, "padding exceeds the frame")
        }
        return Array(frame.payload[1..<(frame.payload.count - Int(padding))])
    }

    private func headerBlock(streamID: UInt32, _ block: [UInt8], endStream: Bool, into events: inout [Event]) throws(HTTP2Error) {
        // Decoded whatever becomes of the stream: the HPACK table is the connection's.
        let fields: [HeaderField]
        do { fields = try decoder.decode(block) } catch { throw .connection(.compressionError, "header block: \(error)") }
        guard streamID % 2 == 1 else { throw .connection(.protocolError, "a client stream with an even ID") }
        if streamID <= lastStreamID {
            // Trailers on a request, which no health call sends, or a reused ID.
            guard case .receiving? = streams[streamID] else { throw .connection(.protocolError, "HEADERS on a closed stream") }
            rstStream(streamID, .protocolError)
            streams[streamID] = nil
            return
        }
        lastStreamID = streamID
        guard streams.count < limits.maxConcurrentStreams else {
            rstStream(streamID, .refusedStream)
            return
        }
        if endStream {
            streams[streamID] = .responding(sendWindow: peerInitialWindow, queue: [])
            events.append(.request(streamID: streamID, fields: fields, body: []))
        } else {
            streams[streamID] = .receiving(fields: fields, body: [])
        }
    }

    /// Every DATA byte counts against our receive windows; they are replenished as bytes come,
    /// in steps, so that a client sending a request never stalls (and one sending too much is
    /// cut off by the body limit, not by the window).
    private func acknowledge(_ n: Int) {
        receivedUnacknowledged += n
        if receivedUnacknowledged >= 16_384 {
            var payload: [UInt8] = []
            appendUInt32(UInt32(receivedUnacknowledged), to: &payload)
            Frame(.windowUpdate, streamID: 0, payload: payload).serialize(into: &outbound)
            receivedUnacknowledged = 0
        }
    }

    // MARK: Sending

    /// Response headers (or trailers, with `endStream`) on a stream with a complete request.
    public func sendHeaders(streamID: UInt32, _ fields: [HeaderField], endStream: Bool) {
        enqueue(streamID, .headers(fields, endStream: endStream))
    }

    public func sendData(streamID: UInt32, _ bytes: [UInt8], endStream: Bool) {
        enqueue(streamID, .data(bytes, endStream: endStream))
    }

    public func reset(streamID: UInt32, code: HTTP2ErrorCode) {
        guard streams.removeValue(forKey: streamID) != nil else { return }
        rstStream(streamID, code)
    }

    private func enqueue(_ streamID: UInt32, _ segment: Segment) {
        guard case .responding(let window, var queue)? = streams[streamID] else { return }
        queue.append(segment)
        streams[streamID] = .responding(sendWindow: window, queue: queue)
        flush(streamID)
        if outbound.count > limits.maxOutbound { fail(.connection(.enhanceYourCalm, "the client does not read what it is sent")) }
    }

    private func flushAll() {
        for id in streams.keys.sorted() { flush(id) }
    }

    private func flush(_ id: UInt32) {
        guard case .responding(var window, var queue)? = streams[id] else { return }
        while let segment = queue.first {
            switch segment {
            case .headers(let fields, let end):
                serializeHeaderBlock(encoder.encode(fields), streamID: id, endStream: end, maxFrameSize: peerMaxFrameSize, into: &outbound)
                queue.removeFirst()
                if end {
                    streams[id] = nil
                    return
                }
            case .data(let bytes, let end):
                let allowed = min(bytes.count, window, connectionSendWindow, peerMaxFrameSize)
                if allowed == 0 && !bytes.isEmpty {
                    streams[id] = .responding(sendWindow: window, queue: queue)
                    return
                }
                window -= allowed
                connectionSendWindow -= allowed
                let done = allowed == bytes.count
                Frame(.data, flags: done && end ? FrameFlags.endStream : 0, streamID: id, payload: Array(bytes.prefix(allowed))).serialize(into: &outbound)
                if done {
                    queue.removeFirst()
                    if end {
                        streams[id] = nil
                        return
                    }
                } else {
                    queue[0] = .data(Array(bytes.dropFirst(allowed)), endStream: end)
                }
            }
        }
        streams[id] = .responding(sendWindow: window, queue: queue)
    }

    private func rstStream(_ id: UInt32, _ code: HTTP2ErrorCode) {
        var payload: [UInt8] = []
        appendUInt32(code.rawValue, to: &payload)
        Frame(.rstStream, streamID: id, payload: payload).serialize(into: &outbound)
    }

    private func goAway(_ code: HTTP2ErrorCode, debug: String) {
        var payload: [UInt8] = []
        appendUInt32(lastStreamID, to: &payload)
        appendUInt32(code.rawValue, to: &payload)
        payload.append(contentsOf: debug.utf8.prefix(256))
        Frame(.goAway, streamID: 0, payload: payload).serialize(into: &outbound)
    }
}
