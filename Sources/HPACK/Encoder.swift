/// Encodes header lists (RFC 7541 §6). Strings are Huffman-coded when that is no longer, as in
/// RFC 7541's examples.
public struct HPACKEncoder: Sendable {
    public enum Indexing: Sendable {
        /// Literals are never added to the dynamic table: the encoder keeps no state, so the
        /// peer's SETTINGS_HEADER_TABLE_SIZE never matters.
        case none
        /// Literals are added to the dynamic table, as in RFC 7541's examples.
        case incremental
    }

    public private(set) var table: DynamicTable
    public let indexing: Indexing
    public let huffman: Bool

    public init(indexing: Indexing = .none, huffman: Bool = true, tableSize: Int = 4096) {
        self.indexing = indexing
        self.huffman = huffman
        self.table = DynamicTable(maximumSize: tableSize)
    }

    public mutating func encode(_ fields: [HeaderField]) -> [UInt8] {
        var out: [UInt8] = []
        for field in fields { encode(field, into: &out) }
        return out
    }

    public mutating func encode(_ field: HeaderField, into out: inout [UInt8]) {
        let match = HeaderIndex.find(field, dynamic: indexing == .incremental ? table : DynamicTable(maximumSize: 0))
        if let full = match.full {
            IntegerCoding.encode(full, prefixBits: 7, flags: 0x80, into: &out)
            return
        }
        let (prefixBits, flags): (Int, UInt8) = indexing == .incremental ? (6, 0x40) : (4, 0x00)
        IntegerCoding.encode(match.name ?? 0, prefixBits: prefixBits, flags: flags, into: &out)
        if match.name == nil { encodeString(field.nameBytes, into: &out) }
        encodeString(field.valueBytes, into: &out)
        if indexing == .incremental { table.add(field) }
    }

    private func encodeString(_ bytes: [UInt8], into out: inout [UInt8]) {
        let coded = huffman ? Huffman.encodedLength(bytes) : Int.max
        if coded <= bytes.count {
            IntegerCoding.encode(coded, prefixBits: 7, flags: 0x80, into: &out)
            Huffman.encode(bytes, into: &out)
        } else {
            IntegerCoding.encode(bytes.count, prefixBits: 7, flags: 0x00, into: &out)
            out.append(contentsOf: bytes)
        }
    }
}
