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
    /// The servers that answered UNIMPLEMENTED for Health/List: not asked again.
    var listUnimplementedBy: Set<String> = []
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
        listing = services == [GateConfiguration.everyListedService]
        // Each service once, in order (the supervisor refuses repeats; a model keyed by name
        // must not trap on one that came another way).
        var seen: Set<String> = []
        self.services = listing ? [] : services.filter { seen.insert($0).inserted }
        self.reporter = reporter
        answerReportEvery = answerInterval / 2
        byService = Dictionary(uniqueKeysWithValues: self.services.map { ($0, HealthState.notServing(.starting)) })
    }

    /// What holds for every service at once (found, lost, unreachable): the locator's word,
    /// which holds only while no server is watched.
    func update(_ new: HealthState) {
        guard servers.isEmpty else { return }
        held = false
        for service in services {
            counters.transition(service, from: byService[service], to: new)
            byService[service] = new
        }
        publish(new)
    }

    // MARK: Several servers

    /// A server watched (by discovery, every gRPC server of the tree; with -ready-addr, the one
    /// named) and its services' states.
    struct Watched: Equatable {
        let name: String
        /// Each service's state: the configured ones, or with `listing` the ones this server
        /// lists.
        var byService: [String: HealthState]
        /// With `listing`, until this server's List is answered (or while it fails): why it is
        /// not ready.
        var unlisted: HealthState?
        /// It answered UNIMPLEMENTED for the health service (this answer) and, with no
        /// -ready-service, is SERVING because it answers gRPC.
        var unimplemented: GRPCStatus?
        var noHealth: Bool { unimplemented != nil }
        /// The supervisor was told it has no health service (once it counted).
        var noHealthSaid = false

        /// It has no health service: listed, not waited for while another server has one.
        var withoutHealth: Bool {
            if noHealth { return true }
            return !byService.isEmpty && byService.values.allSatisfy { state in
                if case .notServing(.rpc(let status)) = state { return status.isServerUnimplemented }
                return false
            }
        }
    }

    /// Every server watched, in the order of their names: the verdict and its reason do not
    /// depend on which answered first.
    private(set) var servers: [Watched] = []

    /// A server found (or found again after a lost connection, or moved to a new connection):
    /// until its first answer, what was said of it before does not hold. Nothing is reported
    /// until that answer: a restarted agent, or a second server that answers SERVING at once,
    /// does not make a ready child flap.
    func add(server name: String) {
        let awaiting = Dictionary(uniqueKeysWithValues: (listing ? [] : services).map { ($0, HealthState.notServing(.awaitingAnswer)) })
        let unlisted: HealthState? = listing ? .notServing(.awaitingAnswer) : nil
        if let index = servers.firstIndex(where: { $0.name == name }) {
            let watched = servers[index]
            if watched.unlisted != nil || watched.byService.isEmpty || !watched.byService.values.allSatisfy(\.isServing) {
                servers[index] = Watched(name: name, byService: awaiting, unlisted: unlisted, unimplemented: watched.unimplemented,
                                         noHealthSaid: watched.noHealthSaid)
            }
        } else {
            servers.append(Watched(name: name, byService: awaiting, unlisted: unlisted))
            servers.sort { $0.name < $1.name }
        }
        recompute(quietly: true)
    }

    /// A server whose listener is gone: it no longer counts.
    func remove(server name: String) {
        guard servers.contains(where: { $0.name == name }) else { return }
        servers.removeAll { $0.name == name }
        held = false
        listUnimplementedBy.remove(name)
        if servers.isEmpty {
            for service in services {
                counters.transition(service, from: byService[service], to: .notServing(.noListener))
                byService[service] = .notServing(.noListener)
            }
            publish(.notServing(.noListener))
        } else {
            recompute(quietly: false)
        }
    }

    /// What holds for every service of one server (its connection lost, its List failed).
    func update(server name: String, _ new: HealthState) {
        let index = indexAdding(name)
        if servers[index].unlisted != nil || (listing && servers[index].byService.isEmpty) {
            servers[index].unlisted = new
        }
        for service in servers[index].byService.keys { servers[index].byService[service] = new }
        recompute(quietly: false)
    }

    /// One service of one server, as its Watch or Check said.
    func update(server name: String, service: String, _ new: HealthState) {
        guard listing || services.contains(service) else { return }
        let index = indexAdding(name)
        guard servers[index].byService[service] != nil, servers[index].byService[service] != new else { return }
        servers[index].byService[service] = new
        recompute(quietly: false)
    }

    /// The services one server lists (sorted, each once), with `listing`: one that is new waits
    /// for its first answer, one no longer listed stops counting (a service no server lists any
    /// more is said as SERVICE_UNKNOWN).
    func listed(server name: String, _ names: [String]) {
        guard listing else { return }
        let index = indexAdding(name)
        var states: [String: HealthState] = [:]
        for service in names { states[service] = servers[index].byService[service] ?? .notServing(.awaitingAnswer) }
        servers[index].byService = states
        servers[index].unlisted = nil
        recompute(quietly: false)
    }

    /// The services asked of one server: the configured ones, or with `listing` the ones it
    /// lists.
    func services(of name: String) -> [String] {
        guard listing else { return services }
        return servers.first(where: { $0.name == name })?.byService.keys.sorted() ?? []
    }

    private func indexAdding(_ name: String) -> Int {
        if let index = servers.firstIndex(where: { $0.name == name }) { return index }
        add(server: name)
        return servers.firstIndex(where: { $0.name == name })!
    }

    /// Whether a server's answers count: it has a health service, or no server has one.
    func counts(server name: String) -> Bool {
        guard let watched = servers.first(where: { $0.name == name }) else { return false }
        return !watched.withoutHealth || servers.allSatisfy(\.withoutHealth)
    }

    /// A reason about one of several servers: the server named inside the service, if any.
    private func naming(_ server: String, _ why: Reason) -> Reason {
        guard servers.count > 1 else { return why }
        if case .service(let service, let inner) = why { return .service(service, .server(server, inner.innermost)) }
        return .server(server, why.innermost)
    }

    /// Each service's state over the servers that count: SERVING when every one says so, else
    /// the first (by name) that does not, and why.
    private func recompute(quietly: Bool) {
        let counted = servers.filter { counts(server: $0.name) }
        if listing {
            // The services listed by any server that counts, sorted; one no longer listed by
            // any stops counting.
            let names = Set(counted.flatMap(\.byService.keys)).sorted()
            for gone in services where !names.contains(gone) {
                byService[gone] = nil
                if !quietly { reporter.send(.service(name: gone, state: .notServing(.status(.serviceUnknown)))) }
            }
            services = names
        }
        for service in services {
            var new = HealthState.serving(server: counted.filter { $0.byService[service] != nil }.map(\.name).joined(separator: ", "))
            for watched in counted {
                guard let state = watched.byService[service], case .notServing(let why) = state else { continue }
                new = .notServing(naming(watched.name, why))
                break
            }
            guard byService[service] != new else { continue }
            counters.transition(service, from: byService[service], to: new)
            byService[service] = new
            if (listing || services.count > 1) && !quietly { reporter.send(.service(name: service, state: new)) }
        }
        if !quietly {
            // A server without a health service is said once it counts (alone, or beside others
            // without one), before the SERVING it amounts to.
            for index in servers.indices where servers[index].noHealth && !servers[index].noHealthSaid && counts(server: servers[index].name) {
                servers[index].noHealthSaid = true
                reporter.send(.noHealthService(server: servers[index].name))
            }
        }
        var new = overall
        held = false
        // READY=1 and the ready file cannot be taken back: every turn to SERVING waits until
        // discovery has settled, so that what answered first does not decide.
        if case .serving = new, !state.isServing, let settle, let why = settle() {
            new = .notServing(why)
            held = true
        }
        if quietly, case .notServing = new { state = new } else { publish(new) }
    }

    /// With discovery: asked when every server found turns SERVING, before that is said. Why
    /// discovery has not settled (a listener of the tree waits to be judged), after a look at
    /// the tree begun now; nil once that look found nothing new.
    var settle: (() -> Reason?)?
    /// Every server found is SERVING and `settle` held that back: `reconsider` asks it again.
    private(set) var held = false

    /// Discovery moved on (a listener judged): a SERVING that `settle` held back is asked for
    /// again.
    func reconsider() {
        // With no server left, nothing held is SERVING any more (`remove` said so).
        guard held, !servers.isEmpty else { return }
        recompute(quietly: false)
    }

    private var overall: HealthState {
        // With `listing`, a server that counts and has not listed its services holds the rest.
        if listing, let waiting = servers.first(where: { $0.unlisted != nil && counts(server: $0.name) }),
           case .notServing(let why) = waiting.unlisted! {
            return .notServing(naming(waiting.name, why))
        }
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

    /// The servers that count have no health service (UNIMPLEMENTED from the server itself) and
    /// are ready because they answer gRPC at all: with one server, that server; beside a server
    /// with a health service, one without it does not count.
    var withoutHealth: Bool {
        let counted = servers.filter { counts(server: $0.name) }
        return !counted.isEmpty && counted.allSatisfy(\.noHealth)
    }

    /// A server itself answered UNIMPLEMENTED for grpc.health.v1.Health: a gRPC server
    /// listens, and has no health to report. Said to the supervisor once it counts, before the
    /// SERVING it amounts to.
    func answeredWithoutHealth(server name: String,
                               _ status: GRPCStatus = GRPCStatus(rawCode: GRPCStatusCode.unimplemented.rawValue, message: "", fromServer: true)) {
        guard readyWithoutHealth else { return }
        let index = indexAdding(name)
        servers[index].unimplemented = status
        update(server: name, service: "", .serving(server: name))
        recompute(quietly: false)
    }

    /// A server's health service answered: it has one.
    func answeredWithHealth(server name: String) {
        guard let index = servers.firstIndex(where: { $0.name == name }), servers[index].noHealth else { return }
        servers[index].unimplemented = nil
        servers[index].noHealthSaid = false
        recompute(quietly: false)
    }

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
                       withoutHealth: withoutHealth,
                       servers: servers.count > 1 ? servers.map(listedStates) : [])
    }

    /// One of several servers as the verbose answers list it: one without a health service
    /// that does not count is listed with its answer, UNIMPLEMENTED.
    private func listedStates(_ watched: Watched) -> ServerStates {
        let counts = counts(server: watched.name)
        guard !counts, let status = watched.unimplemented else { return ServerStates(name: watched.name, states: watched.byService, counts: counts) }
        return ServerStates(name: watched.name, states: watched.byService.mapValues { _ in .notServing(.rpc(status)) }, counts: false)
    }

    /// The server, as an -addr would name it, once found (with several, each).
    var server: String {
        if servers.count > 1 { return servers.map(\.name).joined(separator: ", ") }
        for state in byService.values { if case .serving(let server) = state { return server } }
        return servers.first?.name ?? found
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
