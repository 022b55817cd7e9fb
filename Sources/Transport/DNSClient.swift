import Glibc
import SystemCalls

/// A minimal stub resolver as a state machine a reactor drives: A and AAAA questions over UDP
/// to each name server in turn, each name of the search list in turn, answers collected from
/// the answer section (CNAME chains included), bounded by the caller's deadline and resolv.conf's
/// timeout and attempts.
public final class DNSLookup: EventSource {
    public private(set) var result: Result<[SocketAddress], Resolver.Failure>?
    let host: String
    let port: UInt16
    let config: ResolvConf
    let deadline: Int64
    private let servers: [SocketAddress]
    private let names: [String]
    private var nameIndex = 0
    private var attempt = 0
    private var serverIndex = 0
    /// This name had an answer (empty, or "no such name") from some server.
    private var answered = false
    private var lastProblem = "no such host"
    private var lastServer: SocketAddress?
    private var query: Query?

    /// One question pair (A and AAAA) to one server.
    private final class Query {
        let fd: Int32
        let server: SocketAddress
        let idA = UInt16.random(in: 0...UInt16.max)
        var idAAAA: UInt16 { idA &+ 1 }
        let until: Int64
        var v4: [SocketAddress]?
        var v6: [SocketAddress]?
        var nameMissing = false

        init(fd: Int32, server: SocketAddress, until: Int64) {
            self.fd = fd
            self.server = server
            self.until = until
        }

        deinit { close(fd) }
    }

    private enum Outcome {
        case addresses([SocketAddress])
        case noSuchName
        case failed(String)
    }

    init(_ host: String, port: UInt16, config: ResolvConf, deadline: Int64) {
        self.host = host
        self.port = port
        self.config = config
        self.deadline = deadline
        servers = config.nameservers.compactMap { SocketAddress.literal($0, port: 53) }
        names = config.candidates(for: host)
        guard !servers.isEmpty else {
            result = .failure(.failed("lookup \(host): no nameservers"))
            return
        }
        ask()
    }

    /// Sends the next question; what fails at once moves on at once.
    private func ask() {
        while result == nil && query == nil {
            guard nameIndex < names.count else { return finish() }
            let server = servers[serverIndex]
            lastServer = server
            let until = min(deadline, MonotonicClock.deadline(after: Int64(config.timeoutSeconds) * 1_000_000_000))
            switch send(names[nameIndex], to: server, until: until) {
            case .success(let sent): query = sent
            case .failure(let outcome): settle(outcome)
            }
        }
    }

    private func send(_ name: String, to server: SocketAddress, until: Int64) -> Result<Query, OutcomeError> {
        let fd = socket(server.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failure(OutcomeError(.failed(Errno.current.goText))) }
        let sent = Query(fd: fd, server: server, until: until)
        let connected = server.withSockaddr { Glibc.connect(fd, $0, $1) }
        if connected < 0 { return .failure(OutcomeError(.failed(Errno.current.goText))) }
        for (id, type) in [(sent.idA, UInt16(1)), (sent.idAAAA, UInt16(28))] {
            guard let packet = DNSMessage.query(id: id, name: name, type: type) else { return .failure(OutcomeError(.noSuchName)) }
            let n = packet.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { return .failure(OutcomeError(.failed(Errno.current.goText))) }
        }
        return .success(sent)
    }

    private struct OutcomeError: Error {
        let outcome: Outcome
        init(_ outcome: Outcome) { self.outcome = outcome }
    }

    private func settle(_ failure: OutcomeError) { settle(failure.outcome) }

    /// One question's outcome: an answer ends the lookup or this name; a failure moves on to
    /// the next server, attempt, then name.
    private func settle(_ outcome: Outcome) {
        query = nil
        switch outcome {
        case .addresses(let found) where !found.isEmpty:
            result = .success(found)
            return
        case .addresses, .noSuchName:
            answered = true
            nextName()
        case .failed(let why):
            lastProblem = why
            serverIndex += 1
            if serverIndex == servers.count {
                serverIndex = 0
                attempt += 1
                if attempt == config.attempts { nextName() }
            }
        }
        if result == nil && MonotonicClock.now() >= deadline {
            result = .failure(.failed("lookup \(host) on \(lastServer.map { "\($0)" } ?? ""): i/o timeout"))
        }
    }

    private func nextName() {
        if answered { lastProblem = "no such host" }
        answered = false
        nameIndex += 1
        attempt = 0
        serverIndex = 0
    }

    private func finish() {
        if lastProblem == "no such host" {
            result = .failure(.failed("lookup \(host): no such host"))
        } else {
            result = .failure(.failed("lookup \(host) on \(lastServer.map { "\($0)" } ?? ""): \(lastProblem)"))
        }
    }

    /// Reads the replies waiting, a bounded number per turn.
    private func read(_ query: Query) -> Outcome? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<8 {
            let n = buffer.withUnsafeMutableBytes { recv(query.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { return nil }
                return .failed("read udp \(query.server): \(Errno.current.goText)")
            }
            guard let reply = DNSMessage.parseReply(Array(buffer[0..<n]), port: port) else { continue }
            if reply.id == query.idA && query.v4 == nil {
                if reply.rcode == 3 { query.nameMissing = true } else if reply.rcode != 0 { return .failed("server misbehaving") }
                query.v4 = reply.addresses
            } else if reply.id == query.idAAAA && query.v6 == nil {
                if reply.rcode == 3 { query.nameMissing = true } else if reply.rcode != 0 { return .failed("server misbehaving") }
                query.v6 = reply.addresses
            }
            if let v4 = query.v4, let v6 = query.v6 {
                let all = v4 + v6
                return all.isEmpty && query.nameMissing ? .noSuchName : .addresses(all)
            }
        }
        return nil
    }

    // MARK: EventSource

    public func descriptors(into set: inout [pollfd]) {
        if let query { set.append(pollfd(fd: query.fd, events: Int16(POLLIN), revents: 0)) }
    }

    public var wakeAt: Int64? { result == nil ? query?.until ?? deadline : nil }

    public func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        guard result == nil, let query else { return }
        if let entry = polled.first, entry.revents != 0, let outcome = read(query) {
            settle(outcome)
        } else if now >= query.until {
            settle(.failed("i/o timeout"))
        } else {
            return
        }
        ask()
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
