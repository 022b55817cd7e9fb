/// Decodes header blocks (RFC 7541 §6), keeping the dynamic table across blocks of one connection.
public struct HPACKDecoder: Sendable {
    public private(set) var table: DynamicTable
    /// The largest dynamic table the peer may ask for: our SETTINGS_HEADER_TABLE_SIZE.
    public var tableSizeLimit: Int
    /// The largest decoded header list accepted (sum of entry sizes): our
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    public var maxHeaderListSize: Int

    public init(tableSizeLimit: Int = 4096, maxHeaderListSize: Int = 16 << 10) {
        self.table = DynamicTable(maximumSize: tableSizeLimit)
        self.tableSizeLimit = tableSizeLimit
        self.maxHeaderListSize = maxHeaderListSize
    }

    public mutating func decode(_ block: [UInt8]) throws(HPACKError) -> [HeaderField] {
        let bytes = block[...]
        var index = bytes.startIndex
        var fields: [HeaderField] = []
        var listSize = 0
        func append(_ field: HeaderField) throws(HPACKError) {
            listSize += field.size
            if listSize > maxHeaderListSize { throw .headerListTooLarge(limit: maxHeaderListSize) }
            fields.append(field)
        }
        while index < bytes.endIndex {
            let first = bytes[index]
            if first & 0x80 != 0 {
                let i = try IntegerCoding.decode(bytes, at: &index, prefixBits: 7)
                try append(try HeaderIndex.field(at: i, dynamic: table))
            } else if first & 0xC0 == 0x40 {
                let field = try literal(bytes, at: &index, prefixBits: 6)
                try append(field)
                table.add(field)
            } else if first & 0xE0 == 0x20 {
                if !fields.isEmpty { throw .tableSizeUpdateMisplaced }
                let size = try IntegerCoding.decode(bytes, at: &index, prefixBits: 5)
                if size > tableSizeLimit { throw .tableSizeUpdateTooLarge(size) }
                table.resize(size)
            } else {
                // 0000xxxx without indexing, 0001xxxx never indexed: both 4-bit prefixes.
                try append(try literal(bytes, at: &index, prefixBits: 4))
            }
        }
        return fields
    }

    private func literal(_ bytes: ArraySlice<UInt8>, at index: inout Int, prefixBits: Int) throws(HPACKError) -> HeaderField {
        let nameIndex = try IntegerCoding.decode(bytes, at: &index, prefixBits: prefixBits)
        let name = nameIndex == 0 ? try string(bytes, at: &index) : try HeaderIndex.field(at: nameIndex, dynamic: table).nameBytes
        let value = try string(bytes, at: &index)
        return HeaderField(name: name, value: value)
    }

    private func string(_ bytes: ArraySlice<UInt8>, at index: inout Int) throws(HPACKError) -> [UInt8] {
        guard index < bytes.endIndex else { throw .truncated }
        let huffman = bytes[index] & 0x80 != 0
        let length = try IntegerCoding.decode(bytes, at: &index, prefixBits: 7)
        if length > maxHeaderListSize { throw .stringTooLong(length) }
        guard bytes.endIndex - index >= length else { throw .truncated }
        let raw = bytes[index..<index + length]
        index += length
        if huffman { return try Huffman.decode(raw) }
        return Array(raw)
    }
}
