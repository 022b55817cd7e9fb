import Flags

/// A dial target read as Go's url.Parse reads it, as far as grpc-go's resolvers look at it: the
/// scheme (lower-cased), the host of an authority, what follows a scheme's colon when no `/` does
/// (`opaque`, as written), the path with its %XX escapes decoded. A query (`?`) and a fragment
/// (`#`) are not part of either.
struct TargetURL {
    var scheme = ""
    var host: [UInt8] = []
    var opaque: [UInt8] = []
    var path: [UInt8] = []

    enum Failure: Error, Equatable {
        case controlCharacter
        /// The `%` and at most two bytes after it.
        case invalidEscape([UInt8])
        /// Anything else url.Parse refuses: grpc-go then reads the address under its default
        /// scheme, which never fails this way.
        case malformed
    }

    struct ParseError: Error {
        let failure: Failure
        /// The text the failure is about: the URL up to its fragment, or all of it when the
        /// fragment is what failed.
        let url: [UInt8]
    }

    static func parse(_ raw: [UInt8]) throws(ParseError) -> TargetURL {
        let hash = raw.firstIndex(of: UInt8(ascii: "#"))
        let main = Array(raw[..<(hash ?? raw.endIndex)])
        var url: TargetURL
        do { url = try parseWithoutFragment(main) } catch { throw ParseError(failure: error, url: main) }
        if let hash {
            do { _ = try unescape(raw[(hash + 1)...], inHost: false) } catch { throw ParseError(failure: error, url: raw) }
        }
        return url
    }

    private static func parseWithoutFragment(_ raw: [UInt8]) throws(Failure) -> TargetURL {
        if raw.contains(where: { $0 < 0x20 || $0 == 0x7F }) { throw .controlCharacter }
        var url = TargetURL()
        var rest = raw[...]
        // The scheme: a letter, then letters, digits, `+ - .`, up to a colon.
        scan: for (offset, c) in raw.enumerated() {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
                continue
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."):
                if offset == 0 { break scan }
            case UInt8(ascii: ":"):
                if offset == 0 { throw .malformed }
                url.scheme = String(decoding: raw[..<offset].map { $0 | ($0 >= 0x41 && $0 <= 0x5A ? 0x20 : 0) }, as: UTF8.self)
                rest = raw[(offset + 1)...]
                break scan
            default:
                break scan
            }
        }
        let questionMarks = rest.lazy.filter { $0 == UInt8(ascii: "?") }.count
        if rest.last == UInt8(ascii: "?") && questionMarks == 1 {
            rest = rest.dropLast()
        } else if let question = rest.firstIndex(of: UInt8(ascii: "?")) {
            rest = rest[..<question]
        }
        if rest.first != UInt8(ascii: "/") {
            if !url.scheme.isEmpty {
                url.opaque = Array(rest)
                return url
            }
            // A relative path's first segment may not hold a colon (RFC 3986 §3.3).
            if rest[..<(rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex)].contains(UInt8(ascii: ":")) { throw .malformed }
        }
        let slashes = Array("//".utf8)
        if (!url.scheme.isEmpty || !rest.starts(with: Array("///".utf8))) && rest.starts(with: slashes) {
            var authority = rest.dropFirst(2)
            rest = authority[authority.endIndex...]
            if let slash = authority.firstIndex(of: UInt8(ascii: "/")) {
                rest = authority[slash...]
                authority = authority[..<slash]
            }
            url.host = try host(of: authority)
        }
        url.path = try unescape(rest, inHost: false)
        return url
    }

    /// An authority's host, checked as Go checks it (a port of digits only, %XX only for bytes
    /// outside ASCII or `%25`, no character a host may not hold); user information before an
    /// `@` is left out unchecked.
    private static func host(of authority: ArraySlice<UInt8>) throws(Failure) -> [UInt8] {
        var host = authority
        if let at = authority.lastIndex(of: UInt8(ascii: "@")) { host = authority[(at + 1)...] }
        func validOptionalPort(_ port: ArraySlice<UInt8>) -> Bool {
            guard let first = port.first else { return true }
            return first == UInt8(ascii: ":") && port.dropFirst().allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        }
        if host.first == UInt8(ascii: "[") {
            guard let close = host.lastIndex(of: UInt8(ascii: "]")), validOptionalPort(host[(close + 1)...]) else { throw .malformed }
        } else if let colon = host.lastIndex(of: UInt8(ascii: ":")), !validOptionalPort(host[colon...]) {
            throw .malformed
        }
        return try unescape(host, inHost: true)
    }

    /// Go's unescape: each `%` must start %XX; in a host, only bytes outside ASCII (or `%25`) may
    /// be escaped and the characters a host may not hold are refused.
    static func unescape(_ text: ArraySlice<UInt8>, inHost: Bool) throws(Failure) -> [UInt8] {
        guard text.contains(UInt8(ascii: "%")) || inHost else { return Array(text) }
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == UInt8(ascii: "%") {
                guard text.endIndex - i > 2, let high = ASCII.hexDigitValue(text[i + 1]), let low = ASCII.hexDigitValue(text[i + 2]) else {
                    throw .invalidEscape(Array(text[i..<min(i + 3, text.endIndex)]))
                }
                if inHost && high < 8 && !(high == 2 && low == 5) { throw .invalidEscape(Array(text[i..<(i + 3)])) }
                out.append(high << 4 | low)
                i += 3
                continue
            }
            if inHost && c < 0x80 && !hostMayHold(c) { throw .malformed }
            out.append(c)
            i += 1
        }
        return out
    }

    private static func hostMayHold(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: "!"), UInt8(ascii: "$"),
             UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"),
             UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"),
             UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\""):
            return true
        default:
            return false
        }
    }
}
