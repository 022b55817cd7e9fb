import Flags

/// The supervisor and the health agent talk in typed messages over two pipes: the agent's
/// configuration and commands in, its reports out. The agent holds facts; the words users read
/// about them are rendered here once (`Reason.description`), for the supervisor's log and the
/// health endpoint's answers alike.

/// What the supervisor tells the agent: its configuration first, then commands.
public enum SupervisorMessage: Equatable, Sendable {
    case configure(GateConfiguration)
    /// SIGTERM with -drain-delay: answer "draining" from now on.
    case drain
    /// What the supervisor knows for the agent's metrics: after `configure`, and on each change.
    case facts(SupervisorFacts)
}

/// A server's health as the agent's health model holds it: the one fact the ready file,
/// NOTIFY_SOCKET, the log and the endpoint all follow.
public enum HealthState: Equatable, Sendable {
    /// The server reports SERVING; `server` names it as an -addr would ("127.0.0.1:50051").
    case serving(server: String)
    case notServing(Reason)

    public var isServing: Bool {
        if case .serving = self { return true }
        return false
    }
}

/// How the agent reaches a server it found.
public enum Reach: UInt8, Equatable, Sendable, CustomStringConvertible {
    case plaintext = 0
    /// TLS as -ready-tls asks.
    case tls = 1
    case spiffe = 2
    /// TLS found by trying, its certificate verified with -ready-tls-ca-cert.
    case tlsVerified = 3
    /// TLS found by trying, its certificate not verified (the socket is the child's).
    case tlsUnverified = 4

    public var description: String {
        switch self {
        case .plaintext: return "plaintext"
        case .tls: return "TLS"
        case .spiffe: return "SPIFFE mTLS"
        case .tlsVerified: return "TLS, certificate verified (-\(GateConfiguration.name(of: \.tls.caCert)))"
        case .tlsUnverified: return "TLS, certificate not verified (the socket is the child's; -\(GateConfiguration.name(of: \.tls.caCert)) verifies it)"
        }
    }
}

/// What the agent tells the supervisor.
public enum AgentMessage: Equatable, Sendable {
    /// The health model changed.
    case health(HealthState)
    /// Discovery found the gRPC server: where, whose socket, and how it is reached.
    case found(server: String, pid: Int32?, reach: Reach)
    /// A listener that is not a gRPC server we can check, and why (said once per listener).
    case passedOver(listener: String, pid: Int32?, why: Rejection)
    /// The server sent GOAWAY: the Watch moves to a new connection.
    case goAway(server: String)
    /// The server has no Watch: a Check every `interval` nanoseconds.
    case noWatch(server: String, interval: Int64)
    /// The X.509-SVID used from now on (`rotated`: it replaced another).
    case svid(id: String, rotated: Bool)
    /// A TLS handshake arrived on the plaintext health port and was closed.
    case tlsOnHealthPort
    /// The configuration cannot be used: the agent exits (`why` says what is wrong).
    case invalidConfiguration(String)
    /// With several services: one service's state changed.
    case service(name: String, state: HealthState)
    /// The server's health service answered (any status): sent with an answer interval only, at
    /// most twice an interval.
    case answered
    /// The server answered UNIMPLEMENTED for the health service itself: with no -ready-service it
    /// is ready because it answers gRPC, and gets no periodic Checks (said once, until a server
    /// found answers its health service again).
    case noHealthService(server: String)
    /// A server found by discovery is gone (its listener closed): it no longer counts.
    case gone(server: String)
}

/// How the agent's process ends, for the supervisor's log.
public enum AgentExit: Int32, Sendable, CustomStringConvertible {
    /// Signalled, or told to stop.
    case stopped = 0
    /// The supervisor closed its end of the conversation.
    case supervisorGone = 3
    /// The supervisor spoke something this agent cannot read (another version, a broken frame).
    case protocolError = 4
    /// The configuration it was given cannot be used.
    case invalidConfiguration = 5

    public var description: String {
        switch self {
        case .stopped: return "stopped"
        case .supervisorGone: return "its supervisor went away"
        case .protocolError: return "it could not read the supervisor's messages"
        case .invalidConfiguration: return "its configuration cannot be used"
        }
    }
}

extension GateConfiguration {
    /// `-ready-service '*'`: every service the server lists (Health/List), each one watched.
    public var listsServices: Bool { services == [GateConfiguration.everyListedService] }
    public static let everyListedService = "*"
}
