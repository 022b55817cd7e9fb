import Glibc
import SystemCalls

/// A minimal stub resolver: A and AAAA questions over UDP, answers collected from the answer
/// section (CNAME chains included), bounded by the caller's deadline.
struct DNSClient {
    let config: ResolvConf

    func lookup(_ host: String, port: UInt16, by deadline: Deadline) throws(Resolver.Failure) -> [SocketAddress] {
        let servers = config.nameservers.compactMap { SocketAddress.literal($0, port: 53) }
        guard !servers.isEmpty else { throw Resolver.Failure.failed("lookup \(host): no nameservers") }
        var lastProblem = "no such host"
        var lastServer = servers[0]
        for name in config.candidates(for: host) {
            var answered = false
            attempts: for _ in 0..<config.attempts {
                for server in servers {
                    lastServer = server
                    let perTry = MonotonicClock.deadline(after: Int64(config.timeoutSeconds) * 1_000_000_000)
                    switch query(name, server: server, port: port, by: deadline.capped(at: perTry)) {
                    case .addresses(let found):
                        if !found.isEmpty { return found }
                        answered = true
                        break attempts
                    case .noSuchName:
                        answered = true
                        break attempts
                    case .failed(let why):
                        lastProblem = why
                    case .cancelled:
                        throw Resolver.Failure.cancelled
                    }
                    if deadline.hasPassed {
                        throw Resolver.Failure.failed("lookup \(host) on \(server): i/o timeout")
                    }
                }
            }
            if answered { lastProblem = "no such host" }
        }
        if lastProblem == "no such host" { throw Resolver.Failure.failed("lookup \(host): no such host") }
        throw Resolver.Failure.failed("lookup \(host) on \(lastServer): \(lastProblem)")
    }

    enum Outcome {
        case addresses([SocketAddress])
        case noSuchName
        case failed(String)
        case cancelled
    }

    private func query(_ name: String, server: SocketAddress, port: UInt16, by deadline: Deadline) -> Outcome {
        let fd = socket(server.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failed(goErrnoText(errno)) }
        defer { close(fd) }
        let connected = server.withSockaddr { Glibc.connect(fd, $0, $1) }
        if connected < 0 { return .failed(goErrnoText(errno)) }
        let idA = UInt16.random(in: 0...UInt16.max)
        let idAAAA = idA &+ 1
        for (id, type) in [(idA, UInt16(1)), (idAAAA, UInt16(28))] {
            guard let packet = DNSMessage.query(id: id, name: name, type: type) else { return .noSuchName }
            let sent = packet.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            if sent < 0 { return .failed(goErrnoText(errno)) }
        }
        var v4: [SocketAddress]? = nil
        var v6: [SocketAddress]? = nil
        var nameMissing = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while v4 == nil || v6 == nil {
            switch waitFor(fd, events: Int16(POLLIN), until: deadline) {
            case .timedOut: return .failed("i/o timeout")
            case .cancelled: return .cancelled
            case .ready: break
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return .failed("read udp \(server): \(goErrnoText(errno))")
            }
            guard let reply = DNSMessage.parseReply(Array(buffer[0..<n]), port: port) else { continue }
            if reply.id == idA && v4 == nil {
                if reply.rcode == 3 { nameMissing = true } else if reply.rcode != 0 { return .failed("server misbehaving") }
                v4 = reply.addresses
            } else if reply.id == idAAAA && v6 == nil {
                if reply.rcode == 3 { nameMissing = true } else if reply.rcode != 0 { return .failed("server misbehaving") }
                v6 = reply.addresses
            }
        }
        let all = (v4 ?? []) + (v6 ?? [])
        if all.isEmpty && nameMissing { return .noSuchName }
        return .addresses(all)
    }
}

enum DNSMessage {
    static func query(id: UInt16, name: String, type: UInt16) -> [UInt8]? {
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            let bytes = Array(label.utf8)
            guard !bytes.isEmpty, bytes.count < 64 else { return nil }
            out.append(UInt8(bytes.count))
            out.append(contentsOf: bytes)
        }
        out.append(0)
        guard out.count <= 12 + 255 else { return nil }
        out.append(contentsOf: [UInt8(type >> 8), UInt8(type & 0xFF), 0, 1])
        return out
    }

    struct Reply {
        var id: UInt16
        var rcode: UInt8
        var addresses: [SocketAddress]
    }

    /// Skips a possibly compressed name; returns the index after it.
    private static func skipName(_ b: [UInt8], _ start: Int) -> Int? {
        var i = start
        while i < b.count {
            let len = b[i]
            if len == 0 { return i + 1 }
            if len & 0xC0 == 0xC0 { return i + 2 <= b.count ? i + 2 : nil }
            i += Int(len) + 1
        }
        return nil
    }

    static func parseReply(_ b: [UInt8], port: UInt16) -> Reply? {
        guard b.count >= 12, b[2] & 0x80 != 0 else { return nil }
        let id = UInt16(b[0]) << 8 | UInt16(b[1])
        let rcode = b[3] & 0x0F
        let questions = Int(b[4]) << 8 | Int(b[5])
        let answers = Int(b[6]) << 8 | Int(b[7])
        var i = 12
        for _ in 0..<questions {
            guard let next = skipName(b, i), next + 4 <= b.count else { return nil }
            i = next + 4
        }
        var addresses: [SocketAddress] = []
        for _ in 0..<answers {
            guard let next = skipName(b, i), next + 10 <= b.count else { break }
            let type = UInt16(b[next]) << 8 | UInt16(b[next + 1])
            let length = Int(b[next + 8]) << 8 | Int(b[next + 9])
            let data = next + 10
            guard data + length <= b.count else { break }
            if type == 1 && length == 4 { addresses.append(.ipv4(Array(b[data..<data + 4]), port: port)) }
            if type == 28 && length == 16 { addresses.append(.ipv6(Array(b[data..<data + 16]), port: port)) }
            i = data + length
        }
        return Reply(id: id, rcode: rcode, addresses: addresses)
    }
}
