/// HTTP/2 frame types, flags, settings and error codes (RFC 9113 §6, §7).
public enum FrameType: UInt8, Sendable {
    case data = 0, headers = 1, priority = 2, rstStream = 3, settings = 4, pushPromise = 5
    case ping = 6, goAway = 7, windowUpdate = 8, continuation = 9
}

public enum FrameFlags {
    public static let endStream: UInt8 = 0x1
    public static let ack: UInt8 = 0x1
    public static let endHeaders: UInt8 = 0x4
    public static let padded: UInt8 = 0x8
    public static let priority: UInt8 = 0x20
}

public enum SettingID: UInt16, Sendable {
    case headerTableSize = 1, enablePush = 2, maxConcurrentStreams = 3
    case initialWindowSize = 4, maxFrameSize = 5, maxHeaderListSize = 6
}

public struct HTTP2ErrorCode: RawRepresentable, Equatable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let noError = HTTP2ErrorCode(rawValue: 0x0)
    public static let protocolError = HTTP2ErrorCode(rawValue: 0x1)
    public static let internalError = HTTP2ErrorCode(rawValue: 0x2)
    public static let flowControlError = HTTP2ErrorCode(rawValue: 0x3)
    public static let settingsTimeout = HTTP2ErrorCode(rawValue: 0x4)
    public static let streamClosed = HTTP2ErrorCode(rawValue: 0x5)
    public static let frameSizeError = HTTP2ErrorCode(rawValue: 0x6)
    public static let refusedStream = HTTP2ErrorCode(rawValue: 0x7)
    public static let cancel = HTTP2ErrorCode(rawValue: 0x8)
    public static let compressionError = HTTP2ErrorCode(rawValue: 0x9)
    public static let connectError = HTTP2ErrorCode(rawValue: 0xa)
    public static let enhanceYourCalm = HTTP2ErrorCode(rawValue: 0xb)
    public static let inadequateSecurity = HTTP2ErrorCode(rawValue: 0xc)
    public static let http11Required = HTTP2ErrorCode(rawValue: 0xd)

    private static let names = [
        "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
        "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
        "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
    ]

    public var description: String {
        rawValue < HTTP2ErrorCode.names.count ? HTTP2ErrorCode.names[Int(rawValue)] : "unknown error code 0x\(String(rawValue, radix: 16))"
    }
}

/// A frame as read off the wire: the 9-octet header's fields and the payload.
public struct Frame: Equatable, Sendable {
    public static let headerLength = 9
    public var type: UInt8
    public var flags: UInt8
    public var streamID: UInt32
    public var payload: [UInt8]

    public init(type: UInt8, flags: UInt8 = 0, streamID: UInt32, payload: [UInt8] = []) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.payload = payload
    }

    public init(_ type: FrameType, flags: UInt8 = 0, streamID: UInt32, payload: [UInt8] = []) {
        self.init(type: type.rawValue, flags: flags, streamID: streamID, payload: payload)
    }

    public func has(_ flag: UInt8) -> Bool { flags & flag != 0 }

    public func serialize(into out: inout [UInt8]) {
        let n = payload.count
        out.append(contentsOf: [UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n), type, flags])
        appendUInt32(streamID & 0x7FFF_FFFF, to: &out)
        out.append(contentsOf: payload)
    }

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Frame.headerLength + payload.count)
        serialize(into: &out)
        return out
    }

    /// Parses one frame from the front of `buffer` (from `start`). Returns nil when more bytes
    /// are needed; throws when the declared length exceeds `maxFrameSize`.
    public static func parse(_ buffer: [UInt8], from start: Int, maxFrameSize: Int) throws(HTTP2Error) -> (Frame, Int)? {
        guard buffer.count - start >= headerLength else { return nil }
        let length = Int(buffer[start]) << 16 | Int(buffer[start + 1]) << 8 | Int(buffer[start + 2])
        if length > maxFrameSize {
            throw .connection(.frameSizeError, "frame of \(length) bytes exceeds the maximum of \(maxFrameSize)")
        }
        guard buffer.count - start >= headerLength + length else { return nil }
        let stream = readUInt32(buffer, at: start + 5) & 0x7FFF_FFFF
        let payload = Array(buffer[(start + headerLength)..<(start + headerLength + length)])
        return (Frame(type: buffer[start + 3], flags: buffer[start + 4], streamID: stream, payload: payload), headerLength + length)
    }
}

/// A header block as HEADERS and as many CONTINUATION frames as `maxFrameSize` needs.
func serializeHeaderBlock(_ block: [UInt8], streamID: UInt32, endStream: Bool, maxFrameSize: Int, into out: inout [UInt8]) {
    var rest = block[...]
    var first = true
    repeat {
        let chunk = rest.prefix(maxFrameSize)
        rest = rest.dropFirst(chunk.count)
        var flags: UInt8 = rest.isEmpty ? FrameFlags.endHeaders : 0
        if first && endStream { flags |= FrameFlags.endStream }
        Frame(first ? .headers : .continuation, flags: flags, streamID: streamID, payload: Array(chunk)).serialize(into: &out)
        first = false
    } while !rest.isEmpty
}

@inline(__always)
func appendUInt32(_ v: UInt32, to out: inout [UInt8]) {
    out.append(contentsOf: [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)])
}

@inline(__always)
func readUInt32(_ b: [UInt8], at i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
}

/// A connection error of the HTTP/2 layer: it ends the connection (GOAWAY). Stream errors end
/// only their stream (RST_STREAM) and are reported as events.
public enum HTTP2Error: Error, Equatable, CustomStringConvertible {
    case connection(HTTP2ErrorCode, String)

    public var description: String {
        switch self {
        case .connection(_, let text): return text
        }
    }
}
