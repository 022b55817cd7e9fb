import Addressing
import Glibc
import SystemCalls
import Transport
import Wire

/// One dial as a state machine a reactor drives, so that nothing waits on it: the target is
/// resolved, its addresses are connected to in turn (a refusal moves on to the next), the TLS
/// handshake runs when asked, then the HTTP/2 one; the outcome is a connection once the
/// server's SETTINGS arrived, or why not. It gives up at its deadline.
public final class Dialer: EventSource {
    public enum Outcome {
        case connected(Connection)
        case failed(DialFailure)
    }

    public private(set) var outcome: Outcome?
    public let target: Target
    let security: Security
    let deadline: Int64
    private let settings: GRPCClient.Settings
    private let prepare: (GRPCClient) -> Void
    private var addresses: [SocketAddress] = []
    private var nextAddress = 0
    private var lastFailure: ConnectFailure?

    private enum Stage {
        case idle
        case resolving(DNSLookup)
        case connecting(Socket)
        #if TLS
        case handshakingTLS(TLSConnection, waitsFor: Int16)
        #endif
        case handshakingHTTP2(Connection)
    }
    private var stage = Stage.idle

    /// Starts at once: what can be known without waiting (an address that does not resolve, a
    /// refusal from every address) is the outcome before the first turn.
    public init(_ target: Target, security: Security, userAgent: [UInt8], authority: String? = nil, deadline: Deadline,
                prepare: @escaping (GRPCClient) -> Void = { _ in }) {
        self.target = target
        self.security = security
        self.deadline = deadline.instant
        self.prepare = prepare
        settings = GRPCClient.Settings(authority: authority ?? target.authority, scheme: security.isTLS ? "https" : "http",
                                       userAgent: userAgent)
        do {
            switch try Resolver().start(target, deadline: deadline.instant) {
            case .addresses(let found):
                addresses = found
                connectNext()
            case .lookup(let lookup):
                stage = .resolving(lookup)
            }
        } catch {
            resolveFailed(error)
        }
    }

    private func resolveFailed(_ error: Resolver.Failure) {
        switch error {
        case .interrupted(let why): fail(.interrupted(why))
        case .failed where MonotonicClock.now() >= deadline: fail(.interrupted(.deadline))
        case .failed: fail(.resolve(error))
        }
    }

    /// Stops where it is: whatever it opened is closed.
    public func abandon() {
        stage = .idle
        if outcome == nil { outcome = .failed(.interrupted(.deadline)) }
    }

    private func fail(_ failure: DialFailure) {
        stage = .idle
        outcome = .failed(failure)
    }

    /// The next address, until one connects or is connecting; a refusal known at once moves on.
    private func connectNext() {
        while nextAddress < addresses.count {
            let address = addresses[nextAddress]
            nextAddress += 1
            do {
                let (socket, connected) = try Socket.startConnect(to: address)
                if connected { return reached(socket, address) }
                stage = .connecting(socket)
                return
            } catch {
                lastFailure = error
            }
        }
        guard let lastFailure else { return fail(.resolve(.failed("lookup \(target.authority): no addresses"))) }
        fail(.connect(lastFailure))
    }

    private func reached(_ socket: Socket, _ address: SocketAddress) {
        #if TLS
        if case .tls(let context, _) = security {
            let host: String
            if case .tcp(let h, _) = target { host = h } else { host = "localhost" }
            do {
                let tls = try TLSConnection.start(over: socket, context: context, host: host)
                stage = .handshakingTLS(tls, waitsFor: Int16(POLLOUT))
                continueTLS(tls)
            } catch {
                fail(.connect(error))
            }
            return
        }
        #endif
        startHTTP2(over: socket, address: address)
    }

    #if TLS
    private func continueTLS(_ tls: TLSConnection) {
        do {
            if let events = try tls.continueHandshake() {
                stage = .handshakingTLS(tls, waitsFor: events)
                return
            }
        } catch {
            // TLS 1.2 ends the handshake itself with the server's alert when it wants a client
            // certificate it did not get or refuses the one it got (TLS 1.3 sends it after).
            if tls.certificateWasRequested, case .tls(let failure) = error, case .alert = failure {
                return fail(.certificateRejected(alert: .tls(failure)))
            }
            return fail(.connect(error))
        }
        if case .tls(_, let onHandshake) = security { onHandshake(tls) }
        startHTTP2(over: tls, address: addresses[nextAddress - 1])
    }
    #endif

    private func startHTTP2(over stream: ByteStream, address: SocketAddress) {
        let client = GRPCClient(settings)
        prepare(client)
        let connection = Connection(stream: stream, client: client, address: address)
        stage = .handshakingHTTP2(connection)
        // The preface (and a prepared call) go out now, not after another wait.
        _ = connection.pump(readable: false)
        checkHTTP2(connection)
    }

    private func checkHTTP2(_ connection: Connection) {
        let client = connection.client
        if client.isReady {
            stage = .idle
            outcome = .connected(connection)
            return
        }
        guard client.connectionFailure != nil || connection.isClosed else { return }
        #if TLS
        if let tls = connection.stream as? TLSConnection, tls.certificateWasRequested {
            switch connection.transportFailure {
            case nil: return fail(.certificateRejected(alert: nil))
            case .stream(let alert) where alert.isTLSAlert: return fail(.certificateRejected(alert: alert))
            default: break
            }
        }
        #endif
        fail(.handshake(HandshakeFailure(address: connection.address, firstBytes: connection.firstBytes,
                                         transportFailure: connection.transportFailure,
                                         connectionFailure: client.connectionFailure?.message, tls: security.isTLS)))
    }

    // MARK: EventSource

    public func descriptors(into set: inout [pollfd]) {
        switch stage {
        case .idle: break
        case .resolving(let lookup): lookup.descriptors(into: &set)
        case .connecting(let socket): set.append(pollfd(fd: socket.fd, events: Int16(POLLOUT), revents: 0))
        #if TLS
        case .handshakingTLS(let tls, let events): set.append(pollfd(fd: tls.fd, events: events, revents: 0))
        #endif
        case .handshakingHTTP2(let connection): connection.descriptors(into: &set)
        }
    }

    public var wakeAt: Int64? {
        guard outcome == nil else { return nil }
        if case .handshakingHTTP2(let connection) = stage, let wake = connection.wakeAt { return min(wake, deadline) }
        if case .resolving(let lookup) = stage, let wake = lookup.wakeAt { return min(wake, deadline) }
        return deadline
    }

    public func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        guard outcome == nil else { return }
        let ready = polled.first.map { $0.revents != 0 } ?? false
        switch stage {
        case .idle:
            break
        case .resolving(let lookup):
            lookup.turn(polled, now: now)
            switch lookup.result {
            case nil: break
            case .success(let found):
                addresses = found
                stage = .idle
                connectNext()
            case .failure(let error):
                resolveFailed(error)
            }
        case .connecting(let socket):
            guard ready else { break }
            do {
                try socket.finishConnect()
                reached(socket, addresses[nextAddress - 1])
            } catch {
                lastFailure = error
                connectNext()
            }
        #if TLS
        case .handshakingTLS(let tls, _):
            if ready { continueTLS(tls) }
        #endif
        case .handshakingHTTP2(let connection):
            connection.turn(polled, now: now)
            checkHTTP2(connection)
        }
        if outcome == nil && now >= deadline { fail(.interrupted(.deadline)) }
    }
}
