import Client
import GateProtocol
import Glibc
import SystemCalls
import Transport
import Wire

/// The health agent: a process of its own, started by the supervisor, that finds the servers
/// (or is told where the one is), keeps one connection to each, holds the one health model and reports
/// each change to the supervisor as a typed message. It parses every byte a peer sends, so it
/// runs outside PID 1: a crash here costs a restart of the agent, not the container.
///
/// One reactor drives everything: the supervisor's link, the search for the server, the
/// watch, the Workload API stream and the health endpoint. Nothing waits on anything else, so
/// the endpoint answers at every moment, whatever the agent is doing.
public enum AgentMain {
    /// How long the supervisor's configuration may take to arrive: it writes it before the agent
    /// starts, so it is there at once.
    static let configurationTimeout: Int64 = 5_000_000_000

    public static func main() -> Int32 {
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        sigprocmask(SIG_BLOCK, &pipeSignal, nil)
        let reporter = Reporter()
        // SIGTERM (or the supervisor's death, which is SIGKILL) ends the agent; either cuts any wait.
        let signals = try? SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
        let reactor = Reactor(cancellation: signals)
        let link = SupervisorLink(fd: STDIN_FILENO)
        reactor.add(link)
        let outcome = reactor.run(until: { link.configuration != nil || link.ended != nil },
                                  deadline: MonotonicClock.deadline(after: configurationTimeout))
        if case .interrupted(.signal) = outcome { return AgentExit.stopped.rawValue }
        guard let configuration = link.configuration else {
            reporter.send(.invalidConfiguration("no configuration from the supervisor"))
            return (link.ended ?? .invalidConfiguration).rawValue
        }
        return Agent(configuration, reactor: reactor, link: link, reporter: reporter).run().rawValue
    }
}

final class Agent: EventSource {
    let plan: AgentPlan
    let reactor: Reactor
    let link: SupervisorLink
    let reporter: Reporter
    let model: HealthModel
    let credentials: Credentials
    let locator: Locator
    let endpoint: HealthEndpoint?
    let localProbes: LocalProbes?
    /// Fresh Lists of the servers watched, for the verbose answers and the endpoint's List.
    let lists: ServiceLists
    /// Each server watched, by name: with discovery every gRPC server of the tree, with
    /// -ready-addr the one named.
    private var watchers: [String: Watcher] = [:]
    /// The locator is in the reactor (searching, or scanning on until the tree settles).
    private var locating = false
    /// With -ready-addr, after a lost connection: locate again at this time.
    private var pausedUntil: Int64?
    private var redials = Agent.redials

    /// Pauses between redials of a lost server.
    static let redials = Backoff(first: 100_000_000, maximum: 5_000_000_000)
    /// With the endpoint on, probes come every few seconds: releasing the code between them
    /// would make each fault it back in, so only a longer quiet releases it.
    static let releaseWithEndpoint: Int32 = 2_000
    static let releaseWithoutEndpoint: Int32 = 1_000

    init(_ configuration: GateConfiguration, reactor: Reactor, link: SupervisorLink, reporter: Reporter) {
        plan = AgentPlan(configuration)
        self.reactor = reactor
        self.link = link
        self.reporter = reporter
        model = HealthModel(services: configuration.services, answerInterval: configuration.answerInterval.nanoseconds, reporter: reporter)
        let svids = configuration.spiffe ? SVIDSource(userAgent: plan.userAgent, timeout: plan.rpcTimeout) : nil
        credentials = Credentials(configuration, svids: svids, reporter: reporter)
        lists = ServiceLists(model: model, metadata: plan.metadata)
        var limits = HealthEndpoint.Limits()
        limits.defaultTimeout = configuration.healthTimeout.nanoseconds
        // The supervisor binds -health-addr and hands the socket down as descriptor 3, so that
        // the port stays bound while an agent restarts.
        endpoint = configuration.servesHealth
            ? HealthEndpoint(listener: Socket.adopt(listening: 3), model: model, lists: lists, metadata: plan.metadata, limits: limits,
                             reporter: reporter)
            : nil
        // The supervisor binds the local probe socket too, and hands it down as descriptor 4.
        localProbes = configuration.servesLocalProbes ? LocalProbes(listener: Socket.adopt(listening: 4), model: model, lists: lists, metadata: plan.metadata)
            : nil
        if let svids { reactor.add(svids) }
        if let endpoint { reactor.add(endpoint) }
        if let localProbes { reactor.add(localProbes) }
        locator = Locator(plan: plan, credentials: credentials, model: model, reporter: reporter)
        // Every server found SERVING is ready only once discovery has settled.
        model.settle = { [unowned locator] in locator.confirm(now: MonotonicClock.now()) }
        // A probe while nothing is found yet looks at once, not at the next scan.
        endpoint?.onProbe = { [locator] in locator.scanSoon() }
        localProbes?.onProbe = { [locator] in locator.scanSoon() }
        // Out of descriptors, a local probe wins over the endpoint's oldest idle connection.
        localProbes?.makeRoom = { [weak endpoint] in endpoint?.evictOldestIdle() ?? false }
        reactor.releasesCodeAfter = endpoint == nil ? Agent.releaseWithoutEndpoint : Agent.releaseWithEndpoint
        endpoint?.facts = { [link] in link.facts }
        link.onDrain = { [model, endpoint] in
            model.drain()
            endpoint?.startDraining()
        }
        lists.channels = { [unowned self] in watchers.mapValues(\.channel) }
    }

    func run() -> AgentExit {
        reactor.add(locator)
        locating = true
        reactor.add(self)
        switch reactor.run(until: { link.ended != nil }) {
        case .interrupted, .done, .failed: return link.ended ?? .stopped
        }
    }

    private func watch(_ server: Found) {
        if let old = watchers.removeValue(forKey: server.name) { reactor.remove(old) }
        // Until its first answer, what was said of this server before does not hold.
        model.add(server: server.name)
        let watcher = Watcher(server, plan: plan, model: model, reporter: reporter)
        watcher.channel.onUnaryCallEnded = { [model] path, nanoseconds, _ in
            if path == Health.checkPath { model.counters.checks.observe(nanoseconds: nanoseconds) }
        }
        watchers[server.name] = watcher
        reactor.add(watcher)
        // The servers of probes take their turns after the channels': a Check that ended in
        // this turn is answered in it, not one poll later.
        for server in [endpoint as EventSource?, localProbes].compactMap({ $0 }) {
            reactor.remove(server)
            reactor.add(server)
        }
        model.found = server.name
        attachProbes()
    }

    /// The server the probes' fresh Checks go to: the first by name of those that count (one
    /// with a health service), so that it does not depend on which answered first.
    private var probed: Watcher? {
        let names = watchers.keys.sorted()
        let name = names.first(where: { model.counts(server: $0) }) ?? names.first
        return name.flatMap { watchers[$0] }
    }

    /// Whether the probes hold a channel other than the one they should.
    private var probesMisattached: Bool {
        guard endpoint != nil || localProbes != nil else { return false }
        let channel = probed?.channel
        return (endpoint != nil && endpoint?.channel !== channel) || (localProbes != nil && localProbes?.channel !== channel)
    }

    private func attachProbes() {
        guard probesMisattached else { return }
        endpoint?.detach()
        localProbes?.detach()
        if let channel = probed?.channel {
            endpoint?.attach(channel)
            localProbes?.attach(channel)
        }
    }

    private func finished(_ watcher: Watcher, _ end: Watcher.End, now: Int64) {
        reactor.remove(watcher)
        let server = watcher.server
        watchers[server.name] = nil
        if case .goAway = end {
            // The same server, at once, with fresh credentials; no rediscovery and no report in
            // between.
            switch credentials.current(discovering: false) {
            case .ready(let security, _) where plan.configuration.spiffe:
                return watch(Found(target: server.target, security: security, reach: server.reach, name: server.name,
                                   discovered: server.discovered))
            case .ready, .discover:
                return watch(server)
            case .unavailable:
                break
            }
        }
        attachProbes()
        if server.discovered {
            // Looked for again at once: found again if its listener is still there, gone if not.
            locator.restart(now: now, lost: server.name)
            startLocating()
            return
        }
        // A server that stayed up a while gets the first pause again, not the longest.
        if now - watcher.started > redials.maximum.multipliedSaturated(by: 10) { redials.reset() }
        pausedUntil = now.addingSaturated(redials.next())
    }

    private func startLocating() {
        guard !locating else { return }
        reactor.add(locator)
        locating = true
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) {}

    var wakeAt: Int64? {
        if !locator.found.isEmpty || !locator.gone.isEmpty || (locating && locator.stopped) { return 0 }
        if watchers.values.contains(where: { $0.end != nil }) || probesMisattached { return 0 }
        return pausedUntil
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        for watcher in watchers.values.sorted(by: { $0.server.name < $1.server.name }) {
            if let end = watcher.end { finished(watcher, end, now: now) }
        }
        if let until = pausedUntil, now >= until {
            pausedUntil = nil
            locator.restart(now: now)
            startLocating()
        }
        for name in locator.takeGone() {
            if let watcher = watchers.removeValue(forKey: name) { reactor.remove(watcher) }
            model.remove(server: name)
            reporter.send(.gone(server: name))
            attachProbes()
        }
        for server in locator.takeFound() { watch(server) }
        if locating && locator.stopped {
            reactor.remove(locator)
            locating = false
        }
        attachProbes()
    }
}
