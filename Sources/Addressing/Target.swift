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

        public var description: String {
            switch self {
            case .missingPort(let a): return "address \(a): missing port in address"
            case .invalidPort(let a): return "address \(a): invalid port"
            case .invalid(let a, let why): return "address \(a): \(why)"
            }
        }
    }

    public static func parse(_ address: String) throws(ParseError) -> Target {
        if address.hasPrefix("unix-abstract:") {
            let name = String(address.dropFirst("unix-abstract:".count))
            guard !name.isEmpty else { throw .invalid(address, "empty abstract socket name") }
            return .unixAbstract(name: name)
        }
        if address.hasPrefix("unix:@") {
            // Go's net reads a leading '@' as the abstract namespace.
            return try parse("unix-abstract:" + address.dropFirst("unix:@".count))
        }
        if address.hasPrefix("unix:") {
            var path = String(address.dropFirst("unix:".count))
            if path.hasPrefix("//") {
                path.removeFirst(2)
                guard path.hasPrefix("/") else { throw .invalid(address, "unix:// needs an absolute path") }
            }
            guard !path.isEmpty else { throw .invalid(address, "empty unix socket path") }
            return .unix(path: path)
        }
        var hostPort = Substring(address)
        if hostPort.hasPrefix("passthrough:///") {
            hostPort = hostPort.dropFirst("passthrough:///".count)
        } else if hostPort.hasPrefix("dns:///") {
            hostPort = hostPort.dropFirst("dns:///".count)
        } else if hostPort.hasPrefix("dns://"), let slash = hostPort.dropFirst("dns://".count).firstIndex(of: "/") {
            // dns://RESOLVER/HOST:PORT: the named resolver is asked only for a name; an IP
            // endpoint needs no lookup and is reached as grpc-go reaches it.
            let endpoint = try parse(String(hostPort[hostPort.index(after: slash)...]))
            guard case .tcp(let host, _) = endpoint, Target.isIPLiteral(host) else {
                throw .invalid(address, "a DNS resolver other than the system's is not supported; give an IP endpoint or dns:///HOST:PORT")
            }
            return endpoint
        }
        let host: Substring
        let portText: Substring
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw .invalid(address, "missing ']' in address") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let rest = hostPort[hostPort.index(after: close)...]
            guard rest.hasPrefix(":") else {
                if rest.isEmpty { throw .missingPort(address) }
                throw .invalid(address, "unexpected characters after ']'")
            }
            portText = rest.dropFirst()
        } else {
            guard let colon = hostPort.lastIndex(of: ":") else { throw .missingPort(address) }
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
            if host.contains(":") { throw .invalid(address, "too many colons in address") }
        }
        // Go's port parser takes a sign before the digits.
        let digits = portText.hasPrefix("+") ? portText.dropFirst() : portText
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let port = UInt16(digits) else {
            throw .invalidPort(address)
        }
        // ":port" means this host, as Go's dialer reads it.
        return .tcp(host: host.isEmpty ? "localhost" : String(host), port: port)
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
