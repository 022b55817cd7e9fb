import Addressing
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
