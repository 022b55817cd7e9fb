/// The protobuf wire format (varints, tags, length-delimited fields): just what the gRPC
/// messages grpc-init speaks need, written by hand.
public struct ProtobufWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func tag(_ field: Int, _ wireType: ProtobufWireType) {
        varint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    /// proto3 omits a string field that holds the default (empty) value.
    public mutating func string(_ field: Int, _ value: String) {
        if value.isEmpty { return }
        lengthDelimited(field, Array(value.utf8))
    }

    public mutating func lengthDelimited(_ field: Int, _ value: [UInt8]) {
        tag(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func uint(_ field: Int, _ value: UInt64) {
        if value == 0 { return }
        tag(field, .varint)
        varint(value)
    }
}

public enum ProtobufWireType: UInt8, Sendable {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
}

public enum ProtobufError: Error, Equatable, CustomStringConvertible {
    case truncated
    case malformedVarint
    case unsupportedWireType(UInt8)
    case invalidFieldNumber
    case unmatchedEndGroup
    case nestedTooDeep

    public var description: String {
        switch self {
        case .truncated: return "truncated message"
        case .malformedVarint: return "malformed varint"
        case .unsupportedWireType(let t): return "unsupported wire type \(t)"
        case .invalidFieldNumber: return "invalid field number 0"
        case .unmatchedEndGroup: return "end group without a matching start group"
        case .nestedTooDeep: return "groups nested too deep"
        }
    }
}

public struct ProtobufField {
    public let number: Int
    public let wireType: ProtobufWireType
    /// The varint or fixed value (fixed32/fixed64 as their bits).
    public let scalar: UInt64
    /// The payload of a length-delimited field.
    public let bytes: ArraySlice<UInt8>
}

/// Walks the fields of a serialized message in order; unknown fields are the caller's to skip.
public struct ProtobufReader {
    private let buffer: ArraySlice<UInt8>
    private var index: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        buffer = bytes
        index = bytes.startIndex
    }

    public init(_ bytes: [UInt8]) { self.init(bytes[...]) }

    public mutating func varint() throws(ProtobufError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < buffer.endIndex else { throw .truncated }
            let b = buffer[index]
            index += 1
            if shift == 63 && b > 1 { throw .malformedVarint }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw .malformedVarint }
        }
    }

    public mutating func next() throws(ProtobufError) -> ProtobufField? {
        guard index < buffer.endIndex else { return nil }
        let (number, type) = try tag()
        if type == .endGroup { throw .unmatchedEndGroup }
        return try field(number, type, depth: 1)
    }

    /// The nesting protobuf's own parsers allow for groups and messages.
    static let maxDepth = 100

    private mutating func tag() throws(ProtobufError) -> (Int, ProtobufWireType) {
        let key = try varint()
        let number = Int(truncatingIfNeeded: key >> 3)
        guard number > 0 else { throw .invalidFieldNumber }
        guard let type = ProtobufWireType(rawValue: UInt8(key & 7)) else { throw .unsupportedWireType(UInt8(key & 7)) }
        return (number, type)
    }

    /// The value of a field whose tag was just read (not an end-group tag). A group (proto2's
    /// delimited message) is skipped whole, as protobuf skips an unknown field: its `bytes` are
    /// its content, nested groups `depth` deep at most.
    private mutating func field(_ number: Int, _ type: ProtobufWireType, depth: Int) throws(ProtobufError) -> ProtobufField {
        switch type {
        case .varint:
            return ProtobufField(number: number, wireType: type, scalar: try varint(), bytes: [])
        case .fixed64, .fixed32:
            let width = type == .fixed64 ? 8 : 4
            guard buffer.endIndex - index >= width else { throw .truncated }
            var v: UInt64 = 0
            for k in 0..<width { v |= UInt64(buffer[index + k]) << UInt64(8 * k) }
            index += width
            return ProtobufField(number: number, wireType: type, scalar: v, bytes: [])
        case .lengthDelimited:
            let length = try varint()
            guard length <= UInt64(buffer.endIndex - index) else { throw .truncated }
            let slice = buffer[index..<(index + Int(length))]
            index += Int(length)
            return ProtobufField(number: number, wireType: type, scalar: 0, bytes: slice)
        case .startGroup:
            guard depth <= ProtobufReader.maxDepth else { throw .nestedTooDeep }
            let start = index
            while true {
                guard index < buffer.endIndex else { throw .truncated }
                let end = index
                let (inner, innerType) = try tag()
                if innerType == .endGroup {
                    guard inner == number else { throw .unmatchedEndGroup }
                    return ProtobufField(number: number, wireType: type, scalar: 0, bytes: buffer[start..<end])
                }
                _ = try field(inner, innerType, depth: depth + 1)
            }
        case .endGroup:
            throw .unmatchedEndGroup
        }
    }
}
