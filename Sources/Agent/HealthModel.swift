import GateProtocol
import HealthServer
import Glibc
import SystemCalls

/// The agent's one account of the server's health: for each configured service the last state
/// its Watch (or a Check) gave, or why there is none; the state of them all; and whether the
/// supervisor asked for a drain. The supervisor's reports, the health endpoint and the local
/// probe socket read it here; a change is reported once, as it happens.
final class HealthModel {
    /// The services watched: the configured ones, or with `listing` the ones the server lists.
    private(set) var services: [String]
    /// `-ready-service '*'`: the services are the ones the server lists (Health/List), sorted.
    let listing: Bool
    /// The server that answered UNIMPLEMENTED for Health/List: not asked again.
    var listUnimplementedBy: String?
    /// Every service SERVING, or the first that is not and why.
    private(set) var state = HealthState.notServing(.starting)
    private(set) var byService: [String: HealthState]
    /// The supervisor asked for a drain: "not ready" from now on, whatever the server says.
    private(set) var draining = false
    /// The server found has no health service (UNIMPLEMENTED from the server itself) and is
    /// ready because it answers gRPC at all.
    private(set) var withoutHealth = false
    private let reporter: Reporter
    /// With an answer interval: answers are reported at most this often.
    private let answerReportEvery: Int64
    private var answerReported: Int64?
    /// The agent's metrics counters, incremented where their events happen (`GET /metrics`).
    var counters = HealthCounters()

    init(services: [String], answerInterval: Int64, reporter: Reporter) {
        listing = services == [GateConfiguration.everyListedService]
        // Each service once, in order (the supervisor refuses repeats; a model keyed by name
        // must not trap on one that came another way).
        var seen: Set<String> = []
        self.services = listing ? [] : services.filter { seen.insert($0).inserted }
        self.reporter = reporter
        answerReportEvery = answerInterval / 2
        byService = Dictionary(uniqueKeysWithValues: self.services.map { ($0, HealthState.notServing(.starting)) })
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
        if listing || services.count > 1 { reporter.send(.service(name: service, state: new)) }
        publish(overall)
    }

    /// The services the server lists (sorted, each once), with `listing`: one that is new waits
    /// for its first answer, one no longer listed stops counting (said as SERVICE_UNKNOWN).
    func listed(_ names: [String]) {
        guard listing else { return }
        for gone in services where !names.contains(gone) {
            byService[gone] = nil
            reporter.send(.service(name: gone, state: .notServing(.status(.serviceUnknown))))
        }
        for name in names where byService[name] == nil { byService[name] = .notServing(.awaitingAnswer) }
        services = names
        publish(overall)
    }

    private var overall: HealthState {
        for service in services {
            guard case .notServing(let why) = byService[service]! else { continue }
            return .notServing(listing || services.count > 1 ? .service(service, why) : why)
        }
        // A server that lists nothing has nothing ready.
        guard let first = services.first else { return .notServing(.service(GateConfiguration.everyListedService, .status(.serviceUnknown))) }
        return byService[first]!
    }

    private func publish(_ new: HealthState) {
        guard new != state else { return }
        state = new
        reporter.send(.health(new))
    }

    func drain() { draining = true }

    /// Whether a server without a health service is ready because it answers gRPC: only when
    /// the question is the server as a whole (no -ready-service). A service asked for by name
    /// is not there to be SERVING.
    var readyWithoutHealth: Bool { !listing && services == [""] }

    /// The server itself answered UNIMPLEMENTED for grpc.health.v1.Health: a gRPC server
    /// listens, and has no health to report. Said to the supervisor once, before the SERVING
    /// it amounts to.
    func answeredWithoutHealth(server: String) {
        guard readyWithoutHealth else { return }
        if !withoutHealth {
            withoutHealth = true
            reporter.send(.noHealthService(server: server))
        }
        update(service: "", .serving(server: server))
    }

    /// The server's health service answered: it has one.
    func answeredWithHealth() { withoutHealth = false }

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
        HealthSnapshot(services: services, states: byService, overall: state, draining: draining, server: server, connected: connected,
                       withoutHealth: withoutHealth)
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
