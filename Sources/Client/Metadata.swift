import HPACK

/// Request metadata as the -rpc-header flags give it (the probe's, and the gate's
/// -ready-rpc-header).
public enum Metadata {
    /// A "name: value" flag value (its colon checked already) as a header field: split at the
    /// first ':', the value's leading white space trimmed, rune by rune as Go's
    /// strings.TrimLeftFunc(unicode.IsSpace) does (a combining mark after a space stays).
    public static func field(fromFlag bytes: [UInt8]) -> HeaderField {
        let colon = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.endIndex
        return HeaderField(name: Array(bytes[..<colon]), value: trimmingLeadingSpace(bytes[min(colon + 1, bytes.endIndex)...]))
    }

    static func trimmingLeadingSpace(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var rest = bytes
        while let first = rest.first {
            let length = first < 0x80 ? 1 : first >= 0xF0 ? 4 : first >= 0xE0 ? 3 : first >= 0xC0 ? 2 : 0
            guard length > 0, rest.count >= length,
                  let scalar = String(validating: rest.prefix(length), as: UTF8.self)?.unicodeScalars.first,
                  scalar.properties.isWhitespace else { break }
            rest = rest.dropFirst(length)
        }
        return Array(rest)
    }
}
