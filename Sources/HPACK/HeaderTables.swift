/// RFC 7541 Appendix A.
let staticTable: [HeaderField] = [
    HeaderField(":authority", ""), HeaderField(":method", "GET"), HeaderField(":method", "POST"),
    HeaderField(":path", "/"), HeaderField(":path", "/index.html"), HeaderField(":scheme", "http"),
    HeaderField(":scheme", "https"), HeaderField(":status", "200"), HeaderField(":status", "204"),
    HeaderField(":status", "206"), HeaderField(":status", "304"), HeaderField(":status", "400"),
    HeaderField(":status", "404"), HeaderField(":status", "500"), HeaderField("accept-charset", ""),
    HeaderField("accept-encoding", "gzip, deflate"), HeaderField("accept-language", ""),
    HeaderField("accept-ranges", ""), HeaderField("accept", ""),
    HeaderField("access-control-allow-origin", ""), HeaderField("age", ""), HeaderField("allow", ""),
    HeaderField("authorization", ""), HeaderField("cache-control", ""),
    HeaderField("content-disposition", ""), HeaderField("content-encoding", ""),
    HeaderField("content-language", ""), HeaderField("content-length", ""),
    HeaderField("content-location", ""), HeaderField("content-range", ""),
    HeaderField("content-type", ""), HeaderField("cookie", ""), HeaderField("date", ""),
    HeaderField("etag", ""), HeaderField("expect", ""), HeaderField("expires", ""),
    HeaderField("from", ""), HeaderField("host", ""), HeaderField("if-match", ""),
    HeaderField("if-modified-since", ""), HeaderField("if-none-match", ""), HeaderField("if-range", ""),
    HeaderField("if-unmodified-since", ""), HeaderField("last-modified", ""), HeaderField("link", ""),
    HeaderField("location", ""), HeaderField("max-forwards", ""), HeaderField("proxy-authenticate", ""),
    HeaderField("proxy-authorization", ""), HeaderField("range", ""), HeaderField("referer", ""),
    HeaderField("refresh", ""), HeaderField("retry-after", ""), HeaderField("server", ""),
    HeaderField("set-cookie", ""), HeaderField("strict-transport-security", ""),
    HeaderField("transfer-encoding", ""), HeaderField("user-agent", ""), HeaderField("vary", ""),
    HeaderField("via", ""), HeaderField("www-authenticate", ""),
]

/// The dynamic table (RFC 7541 §2.3.2, §4): newest entry first, evicting the oldest to fit.
public struct DynamicTable: Sendable {
    public private(set) var entries: [HeaderField] = []
    public private(set) var size = 0
    public private(set) var maximumSize: Int

    public init(maximumSize: Int = 4096) { self.maximumSize = maximumSize }

    public mutating func add(_ field: HeaderField) {
        let needed = field.size
        if needed > maximumSize {
            entries.removeAll()
            size = 0
            return
        }
        evict(toFit: maximumSize - needed)
        entries.insert(field, at: 0)
        size += needed
    }

    public mutating func resize(_ newMaximum: Int) {
        maximumSize = newMaximum
        evict(toFit: newMaximum)
    }

    private mutating func evict(toFit limit: Int) {
        while size > limit, let oldest = entries.popLast() { size -= oldest.size }
    }
}

/// The combined index space: 1...61 static, then the dynamic table.
struct HeaderIndex {
    static func field(at index: Int, dynamic: DynamicTable) throws(HPACKError) -> HeaderField {
        if index >= 1 && index <= staticTable.count { return staticTable[index - 1] }
        let d = index - staticTable.count - 1
        guard index > 0, d < dynamic.entries.count else { throw .invalidIndex(index) }
        return dynamic.entries[d]
    }

    /// (index of an exact match, index of a name match), each searching static then dynamic.
    static func find(_ field: HeaderField, dynamic: DynamicTable) -> (full: Int?, name: Int?) {
        var nameMatch: Int? = nil
        for (i, entry) in staticTable.enumerated() where entry.nameBytes == field.nameBytes {
            if entry.valueBytes == field.valueBytes { return (i + 1, i + 1) }
            if nameMatch == nil { nameMatch = i + 1 }
        }
        for (i, entry) in dynamic.entries.enumerated() where entry.nameBytes == field.nameBytes {
            if entry.valueBytes == field.valueBytes { return (staticTable.count + 1 + i, nameMatch ?? staticTable.count + 1 + i) }
            if nameMatch == nil { nameMatch = staticTable.count + 1 + i }
        }
        return (nil, nameMatch)
    }
}
