import Addressing
import Glibc
import SystemCalls
import Transport
import Wire

/// One call that brings its own connection: the dial, with the call going out right behind the
/// connection preface, then the connection's turns until the caller lets it go. A source of the
/// reactor, for a caller that needs one call to one server and nothing else of it (trying a
/// listener, the Workload API's stream).
public final class DialedCall: EventSource {
    public private(set) var connection: Connection?
    public private(set) var call: GRPCCall?
    /// Why the dial failed, once it did.
    public private(set) var dialFailure: DialFailure?
    private var dialer: Dialer?

    /// Starts dialing at once; `start` opens the call on the new client.
    public init(_ target: Target, security: Security, userAgent: [UInt8], authority: String? = nil, deadline: Deadline,
                start: @escaping (GRPCClient) -> GRPCCall) {
        let dialing = Dialer(target, security: security, userAgent: userAgent, authority: authority, deadline: deadline) { [weak self] client in
            self?.call = start(client)
        }
        dialer = dialing
        dialed(dialing)
    }

    private func dialed(_ dialing: Dialer) {
        guard let outcome = dialing.outcome else { return }
        dialer = nil
        switch outcome {
        case .connected(let made): connection = made
        case .failed(let failure): dialFailure = failure
        }
    }

    public func descriptors(into set: inout [pollfd]) {
        dialer?.descriptors(into: &set)
        connection?.descriptors(into: &set)
    }

    public var wakeAt: Int64? { dialer?.wakeAt ?? connection?.wakeAt }

    public func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        if let dialer {
            dialer.turn(polled, now: now)
            dialed(dialer)
            return
        }
        connection?.turn(polled, now: now)
    }
}
