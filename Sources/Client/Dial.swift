import Addressing
import Flags
import GateProtocol
import SystemCalls
import Transport
import Wire

/// Why no connection was made, as data: the probe, the SPIFFE fetch and a long-lived process
/// each put it in their own words.
public enum DialFailure: Error, CustomStringConvertible {
    /// The address cannot be resolved (a name unknown to DNS, an unreadable resolv.conf).
    case resolve(Resolver.Failure)
    /// No address accepted the connection (the last one's failure), or TLS failed.
    case connect(ConnectFailure)
    /// The server asked for a client certificate, then closed the connection or sent an alert
    /// (`alert`, when it did): it wanted one, or refused ours.
    case certificateRejected(alert: StreamFailure?)
    /// The HTTP/2 handshake (the server's SETTINGS) did not complete.
    case handshake(HandshakeFailure)
    /// The deadline passed, or a signal of its cancellation arrived.
    case interrupted(Interruption)

    /// A short account, for a long-lived caller's statuses; the probe words each case itself.
    public var description: String {
        switch self {
        case .resolve(let failure): return failure.description
        case .connect(let failure): return failure.description
        case .certificateRejected(let alert): return "tls: the server asked for a client certificate and closed the connection" + (alert.map { " (\($0))" } ?? "")
        case .handshake(let failure): return "HTTP/2 handshake with \(failure.address) failed: " + (failure.transportFailure?.description ?? failure.connectionFailure ?? "connection closed")
        case .interrupted(.deadline): return "i/o timeout"
        case .interrupted(.signal): return "context canceled"
        }
    }
}

/// What the server did instead of completing the HTTP/2 handshake.
public struct HandshakeFailure: Sendable {
    public let address: SocketAddress
    /// The first bytes it sent (at most 64), which tell what it speaks.
    public let firstBytes: [UInt8]
    /// Why the transport failed, when it did.
    public let transportFailure: Connection.TransportFailure?
    /// Why the HTTP/2 connection failed, when it did.
    public let connectionFailure: String?
    public let tls: Bool
}

/// A dial run to its end on a reactor of its own: for a caller with nothing else to wait on
/// (the probe). `prepare` runs on the gRPC client before the handshake, so that a first call goes
/// out right behind the connection preface (RFC 9113 §3.4).
public func dial(_ target: Target, security: Security, userAgent: [UInt8], authority: String? = nil, by deadline: Deadline,
                 prepare: @escaping (GRPCClient) -> Void = { _ in }) throws(DialFailure) -> Connection {
    let dialer = Dialer(target, security: security, userAgent: userAgent, authority: authority,
                        deadline: deadline, prepare: prepare)
    let reactor = Reactor(cancellation: deadline.cancellation)
    reactor.add(dialer)
    switch reactor.run(until: { dialer.outcome != nil }) {
    case .interrupted(let why):
        dialer.abandon()
        throw .interrupted(why)
    case .failed:
        dialer.abandon()
        throw .interrupted(.deadline)
    case .done:
        break
    }
    switch dialer.outcome! {
    case .connected(let connection): return connection
    case .failed(let failure): throw failure
    }
}

extension DialFailure {
    /// The failure as the health verdict carries it: its kind and the transport's account.
    public var unreachable: Unreachable {
        switch self {
        case .resolve(let cause): return Unreachable(.resolve, cause.description)
        case .connect(let cause): return Unreachable(.connect, cause.description)
        case .certificateRejected: return Unreachable(.certificate, description)
        case .handshake(let failure): return Unreachable(.handshake, failure.account)
        case .interrupted(.deadline): return Unreachable(.timeout, description)
        case .interrupted(.signal): return Unreachable(.connect, description)
        }
    }
}

extension HandshakeFailure {
    /// What the server did instead of completing the HTTP/2 handshake, as far as its first
    /// bytes tell.
    public enum Sign: Equatable, Sendable {
        /// A TLS record: the server expects TLS.
        case answeredTLS
        /// A line of text (an HTTP/1 status line, a banner).
        case answeredText(String)
        /// Bytes that cannot start an HTTP/2 frame (in hex).
        case answeredBytes(String)
        /// It closed the connection before sending anything: what a TLS server does to a
        /// plaintext client.
        case closedBeforeHandshake(String)
        /// The handshake failed otherwise.
        case failed(String)
    }

    public var sign: Sign {
        if let transport = transportFailure, transport.isTLS { return .failed(transport.description) }
        let first = firstBytes
        if first.count >= 3 && (first[0] == 0x15 || first[0] == 0x16) && first[1] == 0x03 { return .answeredTLS }
        if first.starts(with: Array("HTTP/".utf8)) || HandshakeFailure.looksLikeText(first) {
            return .answeredText(String(decoding: first.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self))
        }
        if first.count >= 9 && !HandshakeFailure.plausibleFrameHeader(first) {
            return .answeredBytes(first.prefix(16).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " "))
        }
        let reason = transportFailure?.description ?? connectionFailure ?? "connection closed"
        return first.isEmpty ? .closedBeforeHandshake(reason) : .failed(reason)
    }

    /// The account of it, naming no flag.
    public var account: String {
        switch sign {
        case .answeredTLS: return "server at \(address) answered with TLS; it expects a TLS connection"
        case .answeredText(let line): return "server at \(address) does not speak HTTP/2 (it answered \(goQuote(line)))"
        case .answeredBytes(let hex): return "server at \(address) does not speak HTTP/2 (its first bytes: \(hex))"
        case .closedBeforeHandshake(let reason): return "server at \(address) closed the connection before the HTTP/2 handshake (\(reason))"
        case .failed(let reason):
            if let transport = transportFailure, transport.isTLS { return reason }
            return "HTTP/2 handshake with \(address) failed: \(reason)"
        }
    }

    /// A protocol that greets in text (SSH, SMTP, Redis errors, ...): the first line is
    /// printable ASCII. An HTTP/2 server's first bytes are a binary frame header.
    static func looksLikeText(_ bytes: [UInt8]) -> Bool {
        let line = bytes.prefix { $0 != 0x0D && $0 != 0x0A }
        return line.count >= 4 && line.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// Whether 9 bytes could start an HTTP/2 frame: a known type, a length within the default
    /// maximum, the reserved bit clear.
    static func plausibleFrameHeader(_ bytes: [UInt8]) -> Bool {
        let length = Int(bytes[0]) << 16 | Int(bytes[1]) << 8 | Int(bytes[2])
        return bytes[3] <= FrameType.continuation.rawValue && length <= 16_384 && bytes[5] & 0x80 == 0
    }
}
