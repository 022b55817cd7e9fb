import Glibc

/// Where a server of ours listens (-health-addr): `:8086` (every address), `127.0.0.1:8086`,
/// `[::]:8086`. An IP literal or nothing, never a name: what a port faces must not depend on
/// a resolver. Parsed by the supervisor (to refuse a bad one at start) and by the agent.
public struct ListenAddress: Equatable, Sendable {
    /// The IP literal without brackets; empty for every address.
    public let host: String
    public let port: UInt16

    public static func parse(_ text: String) -> ListenAddress? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port != 0 else { return nil }
        var host = String(text[..<colon])
        if host.isEmpty { return ListenAddress(host: "", port: port) }
        var family = AF_INET
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            family = AF_INET6
        }
        var buffer = [UInt8](repeating: 0, count: 16)
        return inet_pton(family, host, &buffer) == 1 ? ListenAddress(host: host, port: port) : nil
    }
}
