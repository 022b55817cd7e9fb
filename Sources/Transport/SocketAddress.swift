import CShim
import Glibc

/// A resolved address in sockaddr form, ready for connect(2).
public struct SocketAddress: Equatable, Sendable, CustomStringConvertible {
    public let family: Int32
    public let bytes: [UInt8]

    /// "127.0.0.1:80", "[::1]:80", "/run/app.sock", "@abstract": built only when printed.
    public var description: String {
        bytes.withUnsafeBytes { raw -> String in
            switch family {
            case AF_INET:
                let sa = raw.loadUnaligned(as: sockaddr_in.self)
                let octets = withUnsafeBytes(of: sa.sin_addr) { Array($0) }
                return "\(octets[0]).\(octets[1]).\(octets[2]).\(octets[3]):\(UInt16(bigEndian: sa.sin_port))"
            case AF_INET6:
                var sa = raw.loadUnaligned(as: sockaddr_in6.self)
                var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                inet_ntop(AF_INET6, &sa.sin6_addr, &text, socklen_t(text.count))
                let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                return "[\(host)]:\(UInt16(bigEndian: sa.sin6_port))"
            default:
                let path = raw.dropFirst(MemoryLayout<sa_family_t>.size)
                if path.first == 0 { return "@" + String(decoding: path.dropFirst(), as: UTF8.self) }
                return String(decoding: path.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
    }

    /// The address as the sockaddr that connect(2) takes: copied into a sockaddr_storage, whose
    /// memory may be viewed as a sockaddr (the bytes themselves are bound to UInt8).
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes.prefix(MemoryLayout<sockaddr_storage>.size)) }
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(bytes.count)) }
        }
    }

    /// 0.0.0.0 or ::, whatever the port.
    public var isUnspecified: Bool {
        switch family {
        case AF_INET: return bytes[4..<8].allSatisfy { $0 == 0 }
        case AF_INET6: return bytes[8..<24].allSatisfy { $0 == 0 }
        default: return false
        }
    }

    public static func ipv4(_ octets: [UInt8], port: UInt16) -> SocketAddress {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: octets) }
        return SocketAddress(family: AF_INET, bytes: withUnsafeBytes(of: sa) { Array($0) })
    }

    public static func ipv6(_ octets: [UInt8], port: UInt16, scope: UInt32 = 0) -> SocketAddress {
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = port.bigEndian
        sa.sin6_scope_id = scope
        withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: octets) }
        return SocketAddress(family: AF_INET6, bytes: withUnsafeBytes(of: sa) { Array($0) })
    }

    /// A unix socket; `abstract` names live in the abstract namespace (a leading NUL). Built by
    /// `cshim_unix_address`, which the supervisor's sockets use too: one rule for what fits.
    public static func unix(_ path: String, abstract: Bool) -> SocketAddress? {
        var sa = sockaddr_un()
        var length: socklen_t = 0
        let raw = Array(path.utf8)
        let built = raw.withUnsafeBufferPointer { name in
            name.withMemoryRebound(to: CChar.self) { cshim_unix_address($0.baseAddress, $0.count, abstract ? 1 : 0, &sa, &length) }
        }
        guard built == 0 else { return nil }
        return SocketAddress(family: AF_UNIX, bytes: withUnsafeBytes(of: sa) { Array($0.prefix(Int(length))) })
    }

    /// Parses an IPv4 or IPv6 literal (no brackets; an IPv6 zone as "%N" or "%ifname").
    public static func literal(_ host: String, port: UInt16) -> SocketAddress? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return .ipv4(withUnsafeBytes(of: v4) { Array($0) }, port: port)
        }
        var address = host
        var scope: UInt32 = 0
        if let percent = host.firstIndex(of: "%") {
            address = String(host[..<percent])
            let zone = String(host[host.index(after: percent)...])
            scope = UInt32(zone) ?? if_nametoindex(zone)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 {
            return .ipv6(withUnsafeBytes(of: v6) { Array($0) }, port: port, scope: scope)
        }
        return nil
    }
}
