import HPACK

/// What makes a header list malformed (RFC 9113 §8.1.1, §8.2, §8.3), by role: a response as Go's
/// HTTP/2 framer checks it for the client, a request and its trailers as §8 has a server check
/// them. Each check answers nil when the list is well formed, or what is wrong with it; a
/// malformed list is a stream error of type PROTOCOL_ERROR.
enum HTTP2FieldRules {
    /// Rules for any field list: names are lower-case tokens, pseudo-headers come first, values
    /// carry no control characters (HTAB aside).
    static func malformedField(_ fields: [HeaderField]) -> String? {
        var regularSeen = false
        for field in fields {
            var name = field.nameBytes[...]
            if name.first == UInt8(ascii: ":") {
                if regularSeen { return "pseudo-header field \(quoted(field.name)) after a regular field" }
                name = name.dropFirst()
            } else {
                regularSeen = true
            }
            if name.isEmpty || !name.allSatisfy(isLowerCaseTokenByte) {
                return "invalid header field name \(quoted(field.name))"
            }
            if field.valueBytes.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return "invalid header field value for \(quoted(field.name))"
            }
        }
        return nil
    }

    /// A request's head (§8.3.1): the general rules, only request pseudo-headers and each once,
    /// :method, :scheme and :path present and not empty (CONNECT aside), no connection-specific
    /// fields, `te` only as "trailers", a content-length of digits. Returns the declared
    /// content-length as well.
    static func malformedRequest(_ fields: [HeaderField]) -> (problem: String?, contentLength: Int?) {
        if let problem = malformedField(fields) { return (problem, nil) }
        var method: String?, scheme: String?, path: String?, authority: String?
        var contentLength: Int?
        for field in fields {
            switch field.name {
            case ":method", ":scheme", ":path", ":authority":
                let seen: Bool
                switch field.name {
                case ":method": seen = method != nil; method = field.value
                case ":scheme": seen = scheme != nil; scheme = field.value
                case ":path": seen = path != nil; path = field.value
                default: seen = authority != nil; authority = field.value
                }
                if seen { return ("repeated pseudo-header field \(quoted(field.name))", nil) }
            case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
                return ("connection-specific header field \(quoted(field.name))", nil)
            case "te":
                if field.value != "trailers" { return ("te header field other than \"trailers\"", nil) }
            case "content-length":
                guard !field.value.isEmpty, field.value.utf8.count <= 18, field.value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                      contentLength == nil || contentLength == Int(field.value) else {
                    return ("invalid content-length", nil)
                }
                contentLength = Int(field.value)
            default:
                if field.name.utf8.first == UInt8(ascii: ":") { return ("pseudo-header field \(quoted(field.name)) in a request", nil) }
            }
        }
        if method == "CONNECT" {
            if scheme != nil || path != nil || authority == nil { return ("malformed CONNECT request", nil) }
            return (nil, contentLength)
        }
        for (name, value) in [(":method", method), (":scheme", scheme), (":path", path)] where value?.isEmpty ?? true {
            return ("missing or empty pseudo-header field \(quoted(name))", nil)
        }
        return (nil, contentLength)
    }

    /// Trailers (§8.1): they end the stream and carry no pseudo-headers.
    static func malformedTrailers(_ fields: [HeaderField], endStream: Bool) -> String? {
        guard endStream else { return "trailers without END_STREAM" }
        if let problem = malformedField(fields) { return problem }
        if let pseudo = fields.first(where: { $0.name.utf8.first == UInt8(ascii: ":") }) {
            return "pseudo-header field \(quoted(pseudo.name)) in trailers"
        }
        return nil
    }

    /// RFC 9110's token characters, less the upper-case letters HTTP/2 forbids in names.
    private static func isLowerCaseTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): return true
        default: return false
        }
    }
}
