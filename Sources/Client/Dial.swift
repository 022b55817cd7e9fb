import Addressing
import SystemCalls
import Transport
import Wire

/// How a connection is secured.
public enum Security {
    case plaintext
    #if TLS
    /// TLS with this context; `onHandshake` sees each completed handshake (for -v).
    case tls(TLSContext, onHandshake: (TLSConnection) -> Void = { _ in })
    #endif

    var isTLS: Bool {
        if case .plaintext = self { return false }
        return true
    }
}

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
    case timedOut
    /// A signal of the deadline's cancellation arrived (its number, when known).
    case cancelled(signal: Int32?)

    /// A short account, for a long-lived caller's statuses; the probe words each case itself.
    public var description: String {
        switch self {
        case .resolve(let failure): return failure.description
        case .connect(let failure): return failure.description
        case .certificateRejected(let alert): return "tls: the server asked for a client certificate and closed the connection" + (alert.map { " (\($0))" } ?? "")
        case .handshake(let failure): return "HTTP/2 handshake with \(failure.address) failed: " + (failure.transportFailure?.description ?? failure.connectionFailure ?? "connection closed")
        case .timedOut: return "i/o timeout"
        case .cancelled: return "context canceled"
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

/// Resolves `target`, connects to its addresses in turn (a refusal moves on to the next), runs
/// the TLS handshake when asked, then the HTTP/2 one: the connection is returned once the
/// server's SETTINGS arrived. `prepare` runs on the gRPC client before the handshake, so that
/// a first call goes out right behind the connection preface (RFC 9113 §3.4).
public func dial(_ target: Target, security: Security, userAgent: [UInt8], authority: String? = nil, by deadline: Deadline,
                 prepare: (GRPCClient) -> Void = { _ in }) throws(DialFailure) -> Connection {
    let addresses: [SocketAddress]
    do { addresses = try Resolver().resolve(target, by: deadline) } catch {
        switch error {
        case .cancelled: throw .cancelled(signal: deadline.cancellation?.next().map { Int32($0.ssi_signo) })
        case .failed where deadline.hasPassed: throw .timedOut
        case .failed: throw .resolve(error)
        }
    }
    var lastFailure: ConnectFailure? = nil
    for address in addresses {
        let socket: Socket
        do {
            socket = try Socket.connect(to: address, by: deadline)
        } catch {
            switch error {
            case .system, .tls:
                lastFailure = error
                continue
            case .timedOut: throw .timedOut
            case .cancelled: throw .cancelled(signal: deadline.cancellation?.next().map { Int32($0.ssi_signo) })
            }
        }
        var stream: ByteStream = socket
        #if TLS
        var tlsConnection: TLSConnection? = nil
        if case .tls(let context, let onHandshake) = security {
            let host: String
            if case .tcp(let h, _) = target { host = h } else { host = "localhost" }
            do {
                tlsConnection = try TLSConnection.handshake(over: socket, context: context, host: host, by: deadline)
            } catch {
                switch error {
                case .system, .tls: throw .connect(error)
                case .timedOut: throw .timedOut
                case .cancelled: throw .cancelled(signal: deadline.cancellation?.next().map { Int32($0.ssi_signo) })
                }
            }
            onHandshake(tlsConnection!)
            stream = tlsConnection!
        }
        #endif
        let client = GRPCClient(GRPCClient.Settings(authority: authority ?? target.authority, scheme: security.isTLS ? "https" : "http",
                                                    userAgent: userAgent))
        prepare(client)
        let connection = Connection(stream: stream, client: client, address: address)
        switch connection.run(until: { client.isReady || client.connectionFailure != nil }, by: deadline) {
        case .done, .closed:
            if client.isReady { return connection }
            #if TLS
            if let tlsConnection, tlsConnection.certificateWasRequested {
                switch connection.transportFailure {
                case nil: throw .certificateRejected(alert: nil)
                case .stream(let alert) where alert.isTLSAlert: throw .certificateRejected(alert: alert)
                default: break
                }
            }
            #endif
            throw .handshake(HandshakeFailure(address: address, firstBytes: connection.firstBytes,
                                              transportFailure: connection.transportFailure,
                                              connectionFailure: client.connectionFailure?.message, tls: security.isTLS))
        case .timedOut:
            throw .timedOut
        case .cancelled(let signo):
            throw .cancelled(signal: signo)
        }
    }
    guard let lastFailure else { throw .resolve(.failed("lookup \(target.authority): no addresses")) }
    throw .connect(lastFailure)
}
