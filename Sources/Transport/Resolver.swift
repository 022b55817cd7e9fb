import Addressing
import Glibc
import SystemCalls

/// Name resolution without glibc's NSS, which a static binary cannot load: IP literals,
/// /etc/hosts, "localhost" even where /etc/hosts is missing, then DNS over UDP to the servers
/// in /etc/resolv.conf with its search list and ndots.
public struct Resolver {
    /// Why a name gave no address, as data (cancellation modelled as for connecting).
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The name cannot be resolved; Go's text for why ("lookup svc: no such host").
        case failed(String)
        /// A signal of the deadline's cancellation ended the lookup.
        case interrupted(Interruption)

        public var description: String {
            switch self {
            case .failed(let text): return text
            case .interrupted: return "operation was canceled"
            }
        }
    }

    public var hostsPath = "/etc/hosts"
    public var resolvConfPath = "/etc/resolv.conf"

    public init() {}

    /// Every address `target` names, in the order they should be tried: known at once, or a
    /// DNS lookup for the reactor to drive.
    public enum Resolution {
        case addresses([SocketAddress])
        case lookup(DNSLookup)
    }

    /// What `target` names, as far as it is known without waiting.
    public func start(_ target: Target, deadline: Int64) throws(Failure) -> Resolution {
        switch target {
        case .unix(let path):
            guard let a = SocketAddress.unix(path, abstract: false) else { throw Failure.failed("unix socket path too long: \(path)") }
            return .addresses([a])
        case .unixAbstract(let name):
            guard let a = SocketAddress.unix(name, abstract: true) else { throw Failure.failed("abstract socket name too long: \(name)") }
            return .addresses([a])
        case .tcp(let host, let port):
            if let literal = SocketAddress.literal(host, port: port) {
                // The unspecified address means this host, as it does to a dialer: both
                // loopbacks, so that a server on either is reached ([::] is copied from a
                // server's listen address, which may be 127.0.0.1 only).
                if literal.isUnspecified {
                    return .addresses([.ipv6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: port), .ipv4([127, 0, 0, 1], port: port)])
                }
                return .addresses([literal])
            }
            let fromHosts = HostsFile.lookup(host, text: Files.text(hostsPath) ?? "", port: port)
            if !fromHosts.isEmpty { return .addresses(fromHosts) }
            let lower = host.lowercased()
            if lower == "localhost" || lower.hasSuffix(".localhost") || lower == "localhost." {
                return .addresses([.ipv4([127, 0, 0, 1], port: port), .ipv6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: port)])
            }
            return .lookup(DNSLookup(host, port: port, config: ResolvConf(Files.text(resolvConfPath) ?? ""), deadline: deadline))
        }
    }
}

enum HostsFile {
    static func lookup(_ host: String, text: String, port: UInt16) -> [SocketAddress] {
        let wanted = host.lowercased().hasSuffix(".") ? String(host.lowercased().dropLast()) : host.lowercased()
        var found: [SocketAddress] = []
        for line in text.split(separator: "\n") {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard words.count >= 2, words.dropFirst().contains(where: { $0.lowercased() == wanted }) else { continue }
            if let address = SocketAddress.literal(String(words[0]), port: port), !found.contains(address) {
                found.append(address)
            }
        }
        return found
    }
}

public struct ResolvConf: Equatable {
    public var nameservers: [String] = []
    public var search: [String] = []
    public var ndots = 1
    public var timeoutSeconds = 5
    public var attempts = 2

    public init(_ text: String) {
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let keyword = words.first, !keyword.hasPrefix("#"), !keyword.hasPrefix(";") else { continue }
            switch keyword {
            case "nameserver" where words.count > 1:
                if nameservers.count < 3 { nameservers.append(String(words[1])) }
            case "search", "domain":
                search = words.dropFirst().map { String($0) }
            case "options":
                for option in words.dropFirst() {
                    if option.hasPrefix("ndots:"), let n = Int(option.dropFirst(6)) { ndots = min(max(n, 0), 15) }
                    if option.hasPrefix("timeout:"), let n = Int(option.dropFirst(8)) { timeoutSeconds = min(max(n, 1), 30) }
                    if option.hasPrefix("attempts:"), let n = Int(option.dropFirst(9)) { attempts = min(max(n, 1), 5) }
                }
            default: break
            }
        }
        if nameservers.isEmpty { nameservers = ["127.0.0.1", "::1"] }
    }

    /// The fully qualified names to try for `name`, in order (resolv.conf(5)).
    public func candidates(for name: String) -> [String] {
        if name.hasSuffix(".") { return [name] }
        let dots = name.filter { $0 == "." }.count
        let searched = search.map { "\(name).\($0.hasSuffix(".") ? $0 : $0 + ".")" }
        return dots >= ndots ? [name + "."] + searched : searched + [name + "."]
    }
}
