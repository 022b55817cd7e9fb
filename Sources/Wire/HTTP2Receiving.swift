import HPACK

/// The receiving half of the connection machine: the bytes a peer sent, frame by frame, each
/// with its verdict (ignore, stream error, connection error).
extension HTTP2Connection {
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

    func handle(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
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

    func handleSettings(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
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

    func handleWindowUpdate(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
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

    func handleData(_ frame: Frame, into events: inout [Event]) throws(HTTP2Error) {
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

    func requireBlockSize(_ count: Int) throws(HTTP2Error) {
        if count > limits.maxHeaderListSize {
            throw .connection(.enhanceYourCalm, "header block larger than \(limits.maxHeaderListSize) bytes")
        }
    }

    func finishHeaders(into events: inout [Event]) throws(HTTP2Error) {
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
    func openPeerStream(_ id: UInt32, _ fields: [HeaderField], endStream: Bool, _ events: inout [Event]) throws(HTTP2Error) {
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
    func closedStream(_ id: UInt32, _ kind: String, _ events: inout [Event]) throws(HTTP2Error) {
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
    func closeRemote(_ id: UInt32, _ stream: HTTP2Stream) {
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
    func peerInitiated(_ id: UInt32) -> Bool { (id % 2 == 1) == (role == .server) }

    /// A frame other than HEADERS or PRIORITY on a stream that was never opened is a protocol
    /// error (§5.1, idle).
    func requireNotIdle(_ frame: Frame) throws(HTTP2Error) {
        let id = frame.streamID
        if peerInitiated(id) ? id > lastPeerStreamID : id >= nextLocalStreamID {
            throw .connection(.protocolError, "frame on stream \(id), which was never opened")
        }
    }

    func unpad(_ frame: Frame) throws(HTTP2Error) -> [UInt8] {
        guard frame.has(FrameFlags.padded) else { return frame.payload }
        guard let padLength = frame.payload.first, Int(padLength) < frame.payload.count else {
            throw .connection(.protocolError, "padding longer than the frame")
        }
        return Array(frame.payload[1..<(frame.payload.count - Int(padLength))])
    }

    func streamError(_ id: UInt32, _ code: HTTP2ErrorCode, _ text: String, _ events: inout [Event]) {
        streams[id] = nil
        rstStream(id, code)
        events.append(.streamError(streamID: id, code: code, reason: text))
    }
}
