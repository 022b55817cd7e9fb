/// Frames on the pipes between the supervisor and the agent: a version byte, a kind byte, a
/// 16-bit big-endian payload length, then the payload; strings in a payload are a 16-bit length
/// and UTF-8, integers 8 bytes big-endian. Bounded both ways: a frame's payload is at most
/// `maxPayload`, a string is cut to fit, a list holds at most `maxList` entries.
public enum GateFraming {
    public static let version: UInt8 = 1
    public static let maxPayload = 16 << 10
    /// A path may be as long as PATH_MAX.
    public static let maxString = 4096
    public static let maxList = 32

    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The peer speaks another version of the protocol.
        case version(UInt8)
        /// A frame longer than the protocol allows.
        case oversized(Int)
        /// A known kind whose payload does not decode.
        case malformed(kind: UInt8)
        /// A known kind whose payload ends inside a value.
        case truncated(kind: UInt8)
        /// A configuration field this version does not know.
        case unknownField(kind: UInt8, tag: UInt8)

        public var description: String {
            switch self {
            case .version(let v): return "protocol version \(v) (this grpc-init speaks \(GateFraming.version))"
            case .oversized(let n): return "a frame of \(n) bytes (at most \(GateFraming.maxPayload))"
            case .malformed(let kind): return "a message of kind \(kind) that does not decode"
            case .truncated(let kind): return "a message of kind \(kind) cut short"
            case .unknownField(let kind, let tag): return "a message of kind \(kind) with a field of unknown tag \(tag)"
            }
        }
    }

    static func frame(kind: UInt8, _ payload: Writer) -> [UInt8] {
        let body = payload.bytes.count > maxPayload ? Array(payload.bytes.prefix(maxPayload)) : payload.bytes
        return [version, kind, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    /// Collects bytes as they arrive and gives whole frames back (kind and payload).
    public struct Decoder {
        private var buffer: [UInt8] = []
        public init() {}

        public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.append(contentsOf: bytes) }

        /// The next whole frame, nil until one has arrived.
        public mutating func nextFrame() throws(Failure) -> (kind: UInt8, payload: [UInt8])? {
            guard buffer.count >= 4 else { return nil }
            guard buffer[0] == version else { throw .version(buffer[0]) }
            let length = Int(buffer[2]) << 8 | Int(buffer[3])
            guard length <= maxPayload else { throw .oversized(length) }
            guard buffer.count >= 4 + length else { return nil }
            let frame = (kind: buffer[1], payload: Array(buffer[4..<4 + length]))
            buffer.removeFirst(4 + length)
            return frame
        }
    }

    struct Writer {
        var bytes: [UInt8] = []

        mutating func string(_ text: String) {
            var utf8 = Array(text.utf8.prefix(GateFraming.maxString))
            // A cut never splits a character: drop continuation bytes left at the end.
            if utf8.count < text.utf8.count { while let last = utf8.last, last & 0xC0 == 0x80 { utf8.removeLast() }; if let last = utf8.last, last >= 0xC0 { utf8.removeLast() } }
            bytes += [UInt8(utf8.count >> 8), UInt8(utf8.count & 0xFF)] + utf8
        }

        mutating func integer(_ value: Int64) {
            let raw = UInt64(bitPattern: value)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: raw >> UInt64(shift))) }
        }

        /// A count and the entries, as many as fit in a frame after what is written so far and
        /// `reserving` bytes to follow, within the list cap (`Reader.count()` reads the count
        /// back); how many were written.
        @discardableResult
        mutating func list<Entry>(_ entries: some Sequence<Entry>, reserving: Int = 0, _ encode: (Entry, inout Writer) -> Void) -> Int {
            var written = Writer()
            var count = 0
            for item in entries.prefix(GateFraming.maxList) {
                var entry = Writer()
                encode(item, &entry)
                if bytes.count + 1 + written.bytes.count + entry.bytes.count + reserving > GateFraming.maxPayload { break }
                written.bytes += entry.bytes
                count += 1
            }
            byte(UInt8(count))
            bytes += written.bytes
            return count
        }

        mutating func flag(_ value: Bool) { bytes.append(value ? 1 : 0) }
        mutating func byte(_ value: UInt8) { bytes.append(value) }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0
        let kind: UInt8

        init(_ bytes: [UInt8], kind: UInt8) {
            self.bytes = bytes
            self.kind = kind
        }

        mutating func byte() throws(Failure) -> UInt8 {
            guard offset < bytes.count else { throw .truncated(kind: kind) }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func flag() throws(Failure) -> Bool {
            switch try byte() {
            case 0: return false
            case 1: return true
            default: throw .malformed(kind: kind)
            }
        }

        mutating func integer() throws(Failure) -> Int64 {
            guard offset + 8 <= bytes.count else { throw .truncated(kind: kind) }
            var raw: UInt64 = 0
            for index in offset..<offset + 8 { raw = raw << 8 | UInt64(bytes[index]) }
            offset += 8
            return Int64(bitPattern: raw)
        }

        mutating func string() throws(Failure) -> String {
            guard offset + 2 <= bytes.count else { throw .truncated(kind: kind) }
            let length = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            offset += 2
            guard length <= GateFraming.maxString else { throw .malformed(kind: kind) }
            guard offset + length <= bytes.count else { throw .truncated(kind: kind) }
            defer { offset += length }
            return String(decoding: bytes[offset..<offset + length], as: UTF8.self)
        }

        /// A count of entries to follow, within the protocol's cap.
        mutating func count() throws(Failure) -> Int {
            let n = Int(try byte())
            guard n <= GateFraming.maxList else { throw .malformed(kind: kind) }
            return n
        }

        func end() throws(Failure) { if offset != bytes.count { throw .malformed(kind: kind) } }

        var atEnd: Bool { offset >= bytes.count }
    }
}
