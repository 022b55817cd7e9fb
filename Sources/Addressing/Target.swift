import Glibc

/// Where to connect, parsed from -addr the way grpc-go's default (passthrough) target reads it,
/// plus the unix schemes grpc-go understands.
public enum Target: Equatable, Sendable {
    case tcp(host: String, port: UInt16)
    case unix(path: String)
    case unixAbstract(name: String)

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingPort(String)
        case invalidPort(String)
        case invalid(String, String)
        /// The URL the address is read as (`passthrough:///` and the address) has a `%` that does
        /// not start a %XX escape; `escape` is that `%` and at most two bytes after it.
        case invalidEscape(url: String, escape: String)
        /// The URL the address is read as has a control character.
        case controlCharacter(url: String)

        public var description: String {
            switch self {
            case .missingPort(let a): return "address \(a): missing port in address"
            case .invalidPort(let a): return "address \(a): invalid port"
            case .invalid(let a, let why): return "address \(a): \(why)"
            case .invalidEscape(let url, let escape): return "address \(url): \"\(escape)\" is not a %XX escape"
            case .controlCharacter(let url): return "address \(url): a control character in an address"
            }
        }
    }

    public static func parse(_ address: String) throws(ParseError) -> Target { try resolve(address).target }

    /// The target and the :authority a channel to it carries, as grpc-go makes them: the address
    /// is read as a URL; unless that URL names a scheme grpc-go resolves (passthrough, dns), it is
    /// `passthrough:///` and the address. The endpoint is the URL's path (%XX escapes decoded,
    /// the query and fragment left out), or what follows the scheme's colon; the authority is
    /// that endpoint as written (escaped where an authority may not hold a byte), `:PORT` being
    /// `localhost:PORT`.
    public static func resolve(_ address: String) throws(ParseError) -> (target: Target, authority: String) {
        if address.hasPrefix("unix:") || address.hasPrefix("unix-abstract:") { return (try unixTarget(address), "localhost") }
        let bytes = Array(address.utf8)
        let resolvedScheme = namesResolvedScheme(bytes)
        // The usual host:port: printable ASCII that names no scheme and holds nothing a URL reads
        // (`%`, `?`, `#`) is its own endpoint under passthrough:///, and is parsed as that.
        if !resolvedScheme && bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "%") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }) {
            return (try hostPort(address), bytes.first == UInt8(ascii: ":") ? "localhost" + address : encodeAuthority(bytes[...]))
        }
        let url: TargetURL
        // Read as a URL of its own only when it names a scheme grpc-go resolves: the usual
        // host:port is parsed once.
        if resolvedScheme, let direct = try? TargetURL.parse(bytes),
           direct.scheme == "passthrough" || direct.scheme == "dns" {
            url = direct
        } else {
            do { url = try TargetURL.parse(Array("passthrough:///".utf8) + bytes) } catch {
                let named = String(decoding: error.url, as: UTF8.self)
                switch error.failure {
                case .controlCharacter: throw .controlCharacter(url: named)
                case .invalidEscape(let escape): throw .invalidEscape(url: named, escape: String(decoding: escape, as: UTF8.self))
                case .malformed: throw .invalid(address, "not a valid target")
                }
            }
        }
        var endpointBytes = url.path.isEmpty ? url.opaque[...] : url.path[...]
        if endpointBytes.first == UInt8(ascii: "/") { endpointBytes = endpointBytes.dropFirst() }
        let endpoint = String(decoding: endpointBytes, as: UTF8.self)
        let authority = endpoint.hasPrefix(":") ? "localhost" + endpoint : encodeAuthority(endpointBytes)
        let target = try hostPort(endpoint)
        if url.scheme == "dns" && !url.host.isEmpty {
            // dns://RESOLVER/HOST:PORT: the named resolver is asked only for a name; an IP
            // endpoint needs no lookup and is reached as grpc-go reaches it.
            guard case .tcp(let host, _) = target, Target.isIPLiteral(host) else {
                throw .invalid(address, "a DNS resolver other than the system's is not supported; give an IP endpoint or dns:///HOST:PORT")
            }
        }
        return (target, authority)
    }

    /// Whether `address` may name passthrough: or dns: (the letters before its first colon, in any
    /// case): only then is it read as a URL of its own.
    private static func namesResolvedScheme(_ address: [UInt8]) -> Bool {
        func starts(with scheme: StaticString) -> Bool {
            let count = scheme.utf8CodeUnitCount
            guard address.count > count, address[count] == UInt8(ascii: ":") else { return false }
            let letters = UnsafeBufferPointer(start: scheme.utf8Start, count: count)
            for (index, letter) in letters.enumerated() where address[index] | 0x20 != letter { return false }
            return true
        }
        return starts(with: "dns") || starts(with: "passthrough")
    }

    private static func unixTarget(_ address: String) throws(ParseError) -> Target {
        if address.hasPrefix("unix-abstract:") {
            let name = String(address.dropFirst("unix-abstract:".count))
            guard !name.isEmpty else { throw .invalid(address, "empty abstract socket name") }
            return .unixAbstract(name: name)
        }
        if address.hasPrefix("unix:@") {
            // Go's net reads a leading '@' as the abstract namespace.
            return try unixTarget("unix-abstract:" + address.dropFirst("unix:@".count))
        }
        var path = String(address.dropFirst("unix:".count))
        if path.hasPrefix("//") {
            path.removeFirst(2)
            guard path.hasPrefix("/") else { throw .invalid(address, "unix:// needs an absolute path") }
        }
        guard !path.isEmpty else { throw .invalid(address, "empty unix socket path") }
        return .unix(path: path)
    }

    /// HOST:PORT as Go's dialer splits it (net.SplitHostPort, then the port).
    private static func hostPort(_ endpoint: String) throws(ParseError) -> Target {
        // In printable ASCII each byte is a character: the bytes are searched, without the
        // grapheme breaking a search of the characters costs.
        let (host, portText) = endpoint.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F })
            ? try splitHostPort(endpoint.utf8, of: endpoint, colon: UInt8(ascii: ":"), open: UInt8(ascii: "["), close: UInt8(ascii: "]"))
            : try splitHostPort(endpoint, of: endpoint, colon: ":", open: "[", close: "]")
        // Go's port parser takes a sign before the digits.
        let digits = portText.utf8.first == UInt8(ascii: "+") ? portText.utf8.dropFirst() : portText.utf8[...]
        var port: UInt32 = 0
        for digit in digits {
            guard digit >= 48 && digit <= 57 else { throw .invalidPort(endpoint) }
            port = port * 10 + UInt32(digit - 48)
            if port > UInt32(UInt16.max) { throw .invalidPort(endpoint) }
        }
        guard !digits.isEmpty else { throw .invalidPort(endpoint) }
        // ":port" means this host, as Go's dialer reads it.
        return .tcp(host: host.isEmpty ? "localhost" : String(host), port: UInt16(port))
    }

    /// The host and the port of `endpoint`, searched in `text`: its bytes or its characters.
    private static func splitHostPort<Text: BidirectionalCollection>(_ text: Text, of endpoint: String, colon: Text.Element,
                                                                     open: Text.Element, close: Text.Element)
        throws(ParseError) -> (host: Substring, port: Substring) where Text.Index == String.Index, Text.Element: Equatable {
        if text.first == open {
            guard let closing = text.firstIndex(of: close) else { throw .invalid(endpoint, "missing ']' in address") }
            let afterClosing = text.index(after: closing)
            guard afterClosing < text.endIndex, text[afterClosing] == colon else {
                if afterClosing == text.endIndex { throw .missingPort(endpoint) }
                throw .invalid(endpoint, "unexpected characters after ']'")
            }
            return (endpoint[text.index(after: text.startIndex)..<closing], endpoint[text.index(after: afterClosing)...])
        }
        guard let last = text.lastIndex(of: colon) else { throw .missingPort(endpoint) }
        if text[..<last].contains(colon) { throw .invalid(endpoint, "too many colons in address") }
        return (endpoint[..<last], endpoint[text.index(after: last)...])
    }

    /// An authority as grpc-go escapes an endpoint to make one (RFC 3986 §3.2): unreserved
    /// characters, sub-delimiters and `: [ ] @` stay, every other byte is %XX.
    static func encodeAuthority(_ bytes: ArraySlice<UInt8>) -> String {
        func stays(_ c: UInt8) -> Bool {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: "!"), UInt8(ascii: "$"),
                 UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"),
                 UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"),
                 UInt8(ascii: "@"):
                return true
            default:
                return false
            }
        }
        guard !bytes.allSatisfy(stays) else { return String(decoding: bytes, as: UTF8.self) }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 3)
        for c in bytes {
            if stays(c) { out.append(c) } else { out += [UInt8(ascii: "%"), hex[Int(c >> 4)], hex[Int(c & 15)]] }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// An IPv4 or IPv6 literal (no name, no zone).
    static func isIPLiteral(_ host: String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, host, &buffer) == 1 || inet_pton(AF_INET6, host, &buffer) == 1
    }

    /// The :authority a request carries for this target.
    public var authority: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix, .unixAbstract: return "localhost"
        }
    }
}
