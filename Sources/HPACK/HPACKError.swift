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

public struct HeaderField: Equatable, Sendable, CustomStringConvertible {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// RFC 7541 §4.1: an entry's size counts its name and value plus 32 octets of overhead.
    public var size: Int { name.utf8.count + value.utf8.count + 32 }

    public var description: String { "\(name): \(value)" }
}
