/// The HPACK Huffman code (RFC 7541 Appendix B). The code is canonical: codes of each length
/// follow one another in symbol order, so the 257 code lengths below determine every code.
enum Huffman {
    /// Bit length of the code for each symbol 0...255, then EOS (256).
    static let codeLengths: [UInt8] = [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
        30,
    ]

    struct Tables {
        var codes: [UInt32] = []
        /// Symbols ordered by (length, symbol): the canonical order.
        var sortedSymbols: [UInt16] = []
        /// For each length: the first code of that length, how many codes, and where they start
        /// in sortedSymbols.
        var firstCode = [UInt32](repeating: 0, count: 31)
        var count = [UInt32](repeating: 0, count: 31)
        var offset = [Int](repeating: 0, count: 31)
    }

    static let tables: Tables = {
        // Counting sort by length keeps symbol order within a length: the canonical order.
        var t = Tables()
        for length in codeLengths { t.count[Int(length)] += 1 }
        var next = 0
        for length in 0..<t.count.count {
            t.offset[length] = next
            next += Int(t.count[length])
        }
        var fill = t.offset
        t.sortedSymbols = [UInt16](repeating: 0, count: 257)
        for symbol in 0..<257 {
            let length = Int(codeLengths[symbol])
            t.sortedSymbols[fill[length]] = UInt16(symbol)
            fill[length] += 1
        }
        // Canonical codes: each length's first code follows the previous length's last code.
        t.codes = [UInt32](repeating: 0, count: 257)
        var code: UInt32 = 0
        for length in 1..<t.count.count {
            t.firstCode[length] = code
            for k in 0..<Int(t.count[length]) {
                t.codes[Int(t.sortedSymbols[t.offset[length] + k])] = code + UInt32(k)
            }
            code = (code + t.count[length]) << 1
        }
        return t
    }()

    static func encodedLength(_ bytes: some Sequence<UInt8>) -> Int {
        var bits = 0
        for b in bytes { bits += Int(codeLengths[Int(b)]) }
        return (bits + 7) / 8
    }

    static func encode(_ bytes: some Sequence<UInt8>, into out: inout [UInt8]) {
        let t = tables
        var accumulator: UInt64 = 0
        var pending = 0
        for b in bytes {
            let length = Int(codeLengths[Int(b)])
            accumulator = (accumulator << UInt64(length)) | UInt64(t.codes[Int(b)])
            pending += length
            while pending >= 8 {
                pending -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt64(pending)))
            }
        }
        if pending > 0 {
            // Pad with the most significant bits of EOS, which are all ones.
            out.append(UInt8(truncatingIfNeeded: (accumulator << UInt64(8 - pending)) | ((1 << UInt64(8 - pending)) - 1)))
        }
    }

    /// Decodes a Huffman-coded string; padding must be at most 7 one-bits, EOS must not appear.
    static func decode(_ bytes: ArraySlice<UInt8>) throws(HPACKError) -> [UInt8] {
        let t = tables
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 8 / 5)
        var code: UInt32 = 0
        var length = 0
        var allOnes = true
        for byte in bytes {
            for shift in stride(from: 7, through: 0, by: -1) {
                let bit = UInt32(byte >> UInt8(shift)) & 1
                code = (code << 1) | bit
                length += 1
                allOnes = allOnes && bit == 1
                if length >= 5 {
                    let index = code &- t.firstCode[length]
                    if code >= t.firstCode[length] && index < t.count[length] {
                        let symbol = t.sortedSymbols[t.offset[length] + Int(index)]
                        if symbol == 256 { throw .invalidHuffmanCode }
                        out.append(UInt8(symbol))
                        code = 0
                        length = 0
                        allOnes = true
                    } else if length >= 30 {
                        throw .invalidHuffmanCode
                    }
                }
            }
        }
        if length > 7 || !allOnes { throw .invalidHuffmanCode }
        return out
    }
}
