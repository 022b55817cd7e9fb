/// RFC 7541 §5.1 prefix-coded integers.
enum IntegerCoding {
    /// Appends `value` with an N-bit prefix; `flags` fills the bits above the prefix.
    static func encode(_ value: Int, prefixBits: Int, flags: UInt8, into out: inout [UInt8]) {
        let limit = (1 << prefixBits) - 1
        if value < limit {
            out.append(flags | UInt8(value))
            return
        }
        out.append(flags | UInt8(limit))
        var rest = value - limit
        while rest >= 128 {
            out.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        out.append(UInt8(rest))
    }

    /// Reads an integer with an N-bit prefix at `index`, advancing it. Values past 2^28 are
    /// refused: nothing legitimate in a header block is that large.
    static func decode(_ bytes: ArraySlice<UInt8>, at index: inout Int, prefixBits: Int) throws(HPACKError) -> Int {
        guard index < bytes.endIndex else { throw .truncated }
        let limit = (1 << prefixBits) - 1
        var value = Int(bytes[index]) & limit
        index += 1
        if value < limit { return value }
        var shift = 0
        while true {
            guard index < bytes.endIndex else { throw .truncated }
            // Padding with zero continuation bytes could push the shift past the bits of an Int,
            // where the next byte would wrap the value negative.
            guard shift <= 28 else { throw .integerOverflow }
            let b = bytes[index]
            index += 1
            value += Int(b & 0x7F) << shift
            if value > 1 << 28 { throw .integerOverflow }
            if b & 0x80 == 0 { return value }
            shift += 7
        }
    }
}
