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
        if hostPort.hasPrefix("dns:///") { hostPort = hostPort.dropFirst("dns:///".count) }
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
        guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let port = UInt16(portText) else {
            throw .invalidPort(address)
        }
        // ":port" means this host, as Go's dialer reads it.
        return .tcp(host: host.isEmpty ? "localhost" : String(host), port: port)
    }

    /// The :authority a request carries for this target.
    public var authority: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix, .unixAbstract: return "localhost"
        }
    }
}
