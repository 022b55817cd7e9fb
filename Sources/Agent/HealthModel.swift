import GateProtocol
import Glibc
import SystemCalls

/// The agent's one account of the server's health: the last state the Watch (or a Check) gave,
/// or why there is none, and whether the supervisor asked for a drain. The supervisor's reports,
/// the health endpoint and anything added later read it here; a change is reported once, as it
/// happens.
final class HealthModel {
    private(set) var state = HealthState.notServing(.starting)
    /// The supervisor asked for a drain: "not ready" from now on, whatever the server says.
    private(set) var draining = false
    private let reporter: Reporter

    init(reporter: Reporter) { self.reporter = reporter }

    func update(_ new: HealthState) {
        guard new != state else { return }
        state = new
        reporter.send(.health(new))
    }

    func drain() { draining = true }

    /// Ready as the endpoint's /readyz means it: SERVING, and not draining.
    var isReady: Bool {
        if draining { return false }
        if case .serving = state { return true }
        return false
    }

    /// Why not ready; nil when ready.
    var reason: Reason? {
        if draining { return .draining }
        if case .notServing(let why) = state { return why }
        return nil
    }
}

/// Writes the agent's messages to the supervisor, one frame each, on stdout (a pipe).
final class Reporter {
    func send(_ message: AgentMessage) { Output.writeAll(STDOUT_FILENO, message.frame) }
}
