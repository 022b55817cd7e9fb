/// Why a header block could not be decoded. Any of these is a COMPRESSION_ERROR on the connection.
public enum HPACKError: Error, Equatable, CustomStringConvertible {
    case truncated
    case integerOverflow
    case invalidIndex(Int)
    case invalidHuffmanCode
    case tableSizeUpdateTooLarge(Int)
    case tableSizeUpdateMisplaced
    case headerListTooLarge(limit: Int)
    case stringTooLong(Int)

    public var description: String {
        switch self {
        case .truncated: return "truncated header block"
        case .integerOverflow: return "integer overflow in header block"
        case .invalidIndex(let i): return "invalid header table index \(i)"
        case .invalidHuffmanCode: return "invalid Huffman-coded string"
        case .tableSizeUpdateTooLarge(let n): return "dynamic table size update to \(n) exceeds the limit"
        case .tableSizeUpdateMisplaced: return "dynamic table size update after a header field"
        case .headerListTooLarge(let limit): return "header list larger than \(limit) bytes"
        case .stringTooLong(let n): return "header string of \(n) bytes exceeds the limit"
        }
    }
}

/// A header field as it goes on the wire: bytes, compared as bytes, as Go's strings are (a
/// Swift String would compare by canonical equivalence and would repair invalid UTF-8). `name`
/// and `value` read them as text.
public struct HeaderField: Equatable, Sendable, CustomStringConvertible {
    public var nameBytes: [UInt8]
    public var valueBytes: [UInt8]

    public init(_ name: String, _ value: String) {
        nameBytes = Array(name.utf8)
        valueBytes = Array(value.utf8)
    }

    public init(name: [UInt8], value: [UInt8]) {
        nameBytes = name
        valueBytes = value
    }

    public var name: String { String(decoding: nameBytes, as: UTF8.self) }
    public var value: String { String(decoding: valueBytes, as: UTF8.self) }

    /// RFC 7541 §4.1: an entry's size counts its name and value plus 32 octets of overhead.
    public var size: Int { nameBytes.count + valueBytes.count + 32 }

    public var description: String { "\(name): \(value)" }
}
