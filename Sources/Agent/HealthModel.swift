import GateProtocol
import HealthServer
import Glibc
import SystemCalls

/// The agent's one account of the server's health: for each configured service the last state
/// its Watch (or a Check) gave, or why there is none; the state of them all; and whether the
/// supervisor asked for a drain. The supervisor's reports, the health endpoint and the local
/// probe socket read it here; a change is reported once, as it happens.
final class HealthModel {
    let services: [String]
    /// Every service SERVING, or the first that is not and why.
    private(set) var state = HealthState.notServing(.starting)
    private(set) var byService: [String: HealthState]
    /// The supervisor asked for a drain: "not ready" from now on, whatever the server says.
    private(set) var draining = false
    private let reporter: Reporter
    /// With an answer interval: answers are reported at most this often.
    private let answerReportEvery: Int64
    private var answerReported: Int64?
    /// The agent's metrics counters, incremented where their events happen (`GET /metrics`).
    var counters = HealthCounters()

    init(services: [String], answerInterval: Int64, reporter: Reporter) {
        self.services = services
        self.reporter = reporter
        answerReportEvery = answerInterval / 2
        byService = Dictionary(uniqueKeysWithValues: services.map { ($0, HealthState.notServing(.starting)) })
    }

    /// The server is found and watched, and no service has answered yet: what was said before
    /// no longer holds, but nothing new is known, so the supervisor is told nothing (a restarted
    /// agent does not make a ready child flap).
    func awaitAnswers() {
        for service in services {
            counters.transition(service, from: byService[service], to: .notServing(.awaitingAnswer))
            byService[service] = .notServing(.awaitingAnswer)
        }
        state = .notServing(.awaitingAnswer)
    }

    /// What holds for every service at once (found, lost, unreachable).
    func update(_ new: HealthState) {
        for service in services {
            counters.transition(service, from: byService[service], to: new)
            byService[service] = new
        }
        publish(new)
    }

    /// One service's state, as its Watch or Check said.
    func update(service: String, _ new: HealthState) {
        guard byService[service] != nil, byService[service] != new else { return }
        counters.transition(service, from: byService[service], to: new)
        byService[service] = new
        if services.count > 1 { reporter.send(.service(name: service, state: new)) }
        publish(overall)
    }

    private var overall: HealthState {
        for service in services {
            guard case .notServing(let why) = byService[service]! else { continue }
            return .notServing(services.count > 1 ? .service(service, why) : why)
        }
        return byService[services[0]]!
    }

    private func publish(_ new: HealthState) {
        guard new != state else { return }
        state = new
        reporter.send(.health(new))
    }

    func drain() { draining = true }

    /// The server's health service answered (any status): reported when an answer interval
    /// asks for it, at most twice an interval.
    func answered(now: Int64) {
        guard answerReportEvery > 0 else { return }
        if let last = answerReported, now - last < answerReportEvery { return }
        answerReported = now
        reporter.send(.answered)
    }

    /// What the health server decides from: the model as it is now.
    func snapshot(connected: Bool) -> HealthSnapshot {
        HealthSnapshot(services: services, states: byService, overall: state, draining: draining, server: server, connected: connected)
    }

    /// The server, as an -addr would name it, once found.
    var server: String {
        for state in byService.values { if case .serving(let server) = state { return server } }
        return found
    }

    /// Set when the server is found (and kept while it is watched).
    var found = ""
}

/// Writes the agent's messages to the supervisor, one frame each, on stdout (a pipe); a test
/// keeps them instead.
final class Reporter {
    private let deliver: (AgentMessage) -> Void

    init(_ deliver: @escaping (AgentMessage) -> Void = { Output.writeAll(STDOUT_FILENO, $0.frame) }) { self.deliver = deliver }

    func send(_ message: AgentMessage) { deliver(message) }
}
