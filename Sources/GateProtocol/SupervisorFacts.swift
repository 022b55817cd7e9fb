/// What only the supervisor knows, for the agent's metrics: its own start, the child's pid and
/// start, when the child first reported SERVING, and how often (and why) the agent was started
/// again. Sent after the configuration and again on each change; a restarted agent gets it anew.
public struct SupervisorFacts: Equatable, Sendable {
    /// Wall-clock instants, nanoseconds since the Unix epoch.
    public var supervisorStarted: Int64 = 0
    public var childStarted: Int64 = 0
    public var childPid: Int32 = 0
    /// Nanoseconds from the supervisor's start to the first SERVING; nil until then.
    public var firstServingAfter: Int64?
    /// Agent restarts so far, by cause (`AgentRestartCause.rawValue` as the index).
    public var agentRestarts: [UInt64] = Array(repeating: 0, count: AgentRestartCause.allCases.count)

    public init() {}

    public mutating func restarted(_ cause: AgentRestartCause) {
        let index = Int(cause.rawValue)
        if agentRestarts[index] < UInt64.max { agentRestarts[index] += 1 }
    }

    public func restarts(_ cause: AgentRestartCause) -> UInt64 {
        Int(cause.rawValue) < agentRestarts.count ? agentRestarts[Int(cause.rawValue)] : 0
    }

    func encode(into w: inout GateFraming.Writer) {
        w.integer(supervisorStarted)
        w.integer(childStarted)
        w.integer(Int64(childPid))
        w.integer(firstServingAfter ?? -1)
        w.byte(UInt8(agentRestarts.count))
        for count in agentRestarts { w.integer(Int64(bitPattern: count)) }
    }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> SupervisorFacts {
        var facts = SupervisorFacts()
        facts.supervisorStarted = try r.integer()
        facts.childStarted = try r.integer()
        guard let pid = try r.pid() else { throw .malformed(kind: r.kind) }
        facts.childPid = pid
        let first = try r.integer()
        guard first >= -1 else { throw .malformed(kind: r.kind) }
        facts.firstServingAfter = first < 0 ? nil : first
        // A newer supervisor may know more causes: the ones this version names are kept.
        let count = try r.count()
        var restarts: [UInt64] = []
        for _ in 0..<count { restarts.append(UInt64(bitPattern: try r.integer())) }
        for index in facts.agentRestarts.indices where index < restarts.count { facts.agentRestarts[index] = restarts[index] }
        return facts
    }
}

/// Why the supervisor started the agent again.
public enum AgentRestartCause: UInt8, CaseIterable, Equatable, Sendable {
    /// Killed by a signal it did not ask for (a crash).
    case crashed = 0
    /// Exited by itself (its status says why: `AgentExit`).
    case exited = 1
    /// It sent a frame that did not decode, and was killed.
    case protocolError = 2
    /// Its control pipe could not take a message, and it was killed.
    case unwritable = 3
    /// It could not be started (a pipe, fork, or its exec failed).
    case startFailed = 4

    /// The `cause` label of `grpc_init_agent_restarts_total`.
    public var label: String {
        switch self {
        case .crashed: return "crashed"
        case .exited: return "exited"
        case .protocolError: return "protocol_error"
        case .unwritable: return "unwritable"
        case .startFailed: return "start_failed"
        }
    }
}
