import Addressing
import Client
import GateProtocol
import Glibc
import SystemCalls

/// Finds the servers to watch: the one -ready-addr names, or every listener of the process tree
/// that answers the Health service. Listeners are tried concurrently as they appear, each by a
/// `ListenerAttempt`; the tree is scanned again after a pause that starts short and grows while
/// nothing changes, and a watched server whose listener is gone is said to be gone. The tree is
/// ready only once discovery has settled: every server found SERVING, no listener waiting to be
/// judged, and a scan begun after both found nothing new (`confirm`, asked by the health model
/// at once). The scans stop a little later (the idle agent does not wake); a lost connection
/// starts them again. Why nothing is found yet goes to the health model as it changes.
final class Locator: EventSource {
    /// Servers found and not yet taken by the agent.
    private(set) var found: [Found] = []
    /// Watched servers whose listener is gone, not yet taken by the agent.
    private(set) var gone: [String] = []
    /// The listeners of the servers handed to the agent: not tried again while watched.
    private var watched: [Listener] = []
    /// The listeners of watched servers whose connection was lost: tried again while they
    /// listen, gone once they do not.
    private var retrying: [Listener] = []
    /// Scans have stopped (the tree is ready and settled, or -ready-addr's server is found).
    private(set) var stopped = false
    /// Once the tree is ready with nothing left to judge: when the scans stop.
    private var settleBy: Int64?
    private let plan: AgentPlan
    private let credentials: Credentials
    private let model: HealthModel
    private let reporter: Reporter
    /// What the scans know of the namespace's listeners: whose each one is.
    private var survey = ListenerSurvey(root: getppid(), excluding: getpid())
    /// The tree's listeners when not read from the system (a test's).
    private let scanSource: (() -> Discovery.Scan)?

    /// Listeners that are not gRPC servers (or not ones we can talk to), and why: not tried again.
    private var rejected: [Listener: Rejection] = [:]
    /// Why each listener of the last scan was not usable this time (tried again on the next).
    private var unavailable: [Listener: Rejection] = [:]
    private var attempts: [ListenerAttempt] = []
    private var lastScan: [Listener] = []
    /// Why each listener of the last scan is passed over, as `explain` last worked it out: nil
    /// once a scan or a verdict changed it.
    private var candidates: [Reason.Candidate]?
    private var nextScan: Int64?
    private var rescans = Locator.rescans
    /// When this search began.
    private var searching = MonotonicClock.now()
    /// With -ready-addr: when to try the credentials again after they failed.
    private var retryAt: Int64?
    private var retries = Locator.retries

    static let maxRejected = 1024
    /// How long the scans go on once the tree is ready: a second server started beside the
    /// first is found before the agent goes idle.
    static let settle: Int64 = 1_000_000_000
    /// Listeners tried at once; more wait for the next scan.
    static let maxAttempts = 16
    /// Rescans while nothing is found: every `quickRescan` for the first `quickPeriod` of a
    /// search (a server starting up is seen within one), then pauses that double up to a second.
    static let quickRescan: Int64 = 50_000_000
    static let quickPeriod: Int64 = 30_000_000_000
    static let rescans = Backoff(first: 50_000_000, maximum: 1_000_000_000)
    /// Pauses before trying again what failed to set up (TLS files, SPIFFE credentials).
    static let retries = Backoff(first: 100_000_000, maximum: 5_000_000_000)

    init(plan: AgentPlan, credentials: Credentials, model: HealthModel, reporter: Reporter, scanSource: (() -> Discovery.Scan)? = nil) {
        self.scanSource = scanSource
        self.plan = plan
        self.credentials = credentials
        self.model = model
        self.reporter = reporter
        step(now: MonotonicClock.now())
    }

    /// How many scans `confirm` makes at most while each finds a listener judged at once.
    static let maxConfirmingScans = 3

    /// Whether discovery has settled, asked as every server found turns SERVING: a scan now,
    /// then the first listener that waits to be judged (found and not yet watched, tried for the
    /// first time, or not tried yet), or nil when there is none and the last scan found nothing
    /// new. With -ready-addr, or once the scans have stopped, nothing is waited for.
    func confirm(now: Int64) -> Reason? {
        guard !named, !stopped else { return nil }
        var appeared: Listener?
        for _ in 0..<Locator.maxConfirmingScans {
            let known = Set(lastScan)
            scan(now: now)
            if let waiting { return .server(waiting, .awaitingAnswer) }
            // New listeners judged at once (one that refused the connection): look once more.
            appeared = lastScan.first { !known.contains($0) }
            if appeared == nil { return nil }
        }
        // Listeners keep appearing: held until a later turn asks again.
        return appeared.map { .server($0.description, .awaitingAnswer) }
    }

    /// The first listener that waits to be judged, as an -addr would name it.
    private var waiting: String? {
        if let server = found.first { return server.name }
        return lastScan.first { listener in
            rejected[listener] == nil && unavailable[listener] == nil && !watched.contains(listener)
        }?.description
    }

    /// A probe came while nothing is found: the next scan is due now.
    func scanSoon() {
        guard watched.isEmpty, found.isEmpty, !named, !stopped else { return }
        nextScan = MonotonicClock.now()
    }

    /// Looks again (a server was lost): what was rejected stays rejected. With discovery, the
    /// lost server's listener is tried again if it is still there, and said gone if not.
    func restart(now: Int64, lost: String? = nil) {
        if let lost, let index = watched.firstIndex(where: { $0.description == lost }) {
            retrying.append(watched.remove(at: index))
        }
        if named {
            found = []
            attempts = []
            retryAt = nil
        }
        stopped = false
        settleBy = nil
        nextScan = nil
        rescans.reset()
        searching = now
        step(now: now)
    }

    /// The servers found since the last call, for the agent to watch.
    func takeFound() -> [Found] {
        defer { found = [] }
        return found
    }

    /// The watched servers whose listener is gone since the last call.
    func takeGone() -> [String] {
        defer { gone = [] }
        return gone
    }

    private var named: Bool { !plan.configuration.addr.isEmpty }

    /// Moves on: with -ready-addr, the credentials; otherwise a scan when one is due.
    private func step(now: Int64) {
        guard !stopped else { return }
        if named {
            guard found.isEmpty else { return }
            if let retryAt, now < retryAt { return }
            retryAt = nil
            let target: Target
            do { target = try Target.parse(plan.configuration.addr) } catch {
                model.update(.notServing(.setup(error.description)))
                return
            }
            switch credentials.current(discovering: false) {
            case .ready(let security, let reach):
                found = [Found(target: target, security: security, reach: reach, name: plan.configuration.addr, discovered: false)]
                stopped = true
            case .discover:
                found = [Found(target: target, security: .plaintext, reach: .plaintext, name: plan.configuration.addr, discovered: false)]
                stopped = true
            case .unavailable(let why):
                model.update(.notServing(why))
                // SPIFFE credentials on their way wake us when they arrive; a failure waits.
                if case .setup = why, credentials.svids?.failure == nil && plan.configuration.spiffe { return }
                retryAt = now.addingSaturated(retries.next())
            }
            return
        }
        if attempts.isEmpty && found.isEmpty && retrying.isEmpty && !watched.isEmpty && model.state.isServing {
            let settleBy = self.settleBy ?? now.addingSaturated(Locator.settle)
            self.settleBy = settleBy
            if now >= settleBy {
                stopped = true
                nextScan = nil
                survey.release()
                return
            }
        } else {
            settleBy = nil
        }
        if let nextScan, now < nextScan { return }
        scan(now: now)
    }

    private func scan(now: Int64) {
        let result = scanSource?() ?? survey.scan()
        if result.procMissing {
            model.update(.notServing(.noProc))
        }
        if result.listeners != lastScan {
            rescans.reset()
            lastScan = result.listeners
            let listening = Set(lastScan)
            unavailable = unavailable.filter { listening.contains($0.key) }
            candidates = nil
            for listener in watched where !listening.contains(listener) { gone.append(listener.description) }
            watched.removeAll { !listening.contains($0) }
        }
        if !retrying.isEmpty {
            let listening = Set(lastScan)
            for listener in retrying where !listening.contains(listener) { gone.append(listener.description) }
            retrying.removeAll { !listening.contains($0) }
        }
        nextScan = now.addingSaturated(now - searching < Locator.quickPeriod ? Locator.quickRescan : rescans.next())
        let security = credentials.current(discovering: true)
        if case .unavailable(let why) = security, !result.listeners.isEmpty {
            model.update(.notServing(why))
            return
        }
        for listener in result.listeners where rejected[listener] == nil && attempts.count < Locator.maxAttempts {
            guard !attempts.contains(where: { $0.listener == listener }), !watched.contains(listener) else { continue }
            let owner = result.owners[listener.inode]
            let attempt: ListenerAttempt
            switch security {
            case .ready(let configured, let reach):
                attempt = ListenerAttempt(listener, owner: owner, plan: plan, credentials: credentials, security: configured, reach: reach)
            case .discover, .unavailable:
                attempt = ListenerAttempt(listener, owner: owner, plan: plan, credentials: credentials, security: .plaintext, reach: .plaintext)
            }
            attempts.append(attempt)
            judged(attempt)
        }
        explain()
    }

    /// Takes an attempt's verdict, if it has one.
    private func judged(_ attempt: ListenerAttempt) {
        guard let verdict = attempt.verdict else { return }
        attempts.removeAll { $0 === attempt }
        let listener = attempt.listener
        switch verdict {
        case .grpc(let server):
            found.append(server)
            retrying.removeAll { $0 == listener }
            watched.append(listener)
            reporter.send(.found(server: listener.description, pid: attempt.owner, reach: server.reach))
        case .rejected(let why):
            if let index = retrying.firstIndex(of: listener) {
                // A server watched until now that no longer answers as one: it no longer counts.
                retrying.remove(at: index)
                gone.append(listener.description)
            }
            // Past the bound it is remembered as unavailable: judged, tried again, never waited for.
            if rejected.count < Locator.maxRejected {
                rejected[listener] = why
                unavailable[listener] = nil
            } else {
                unavailable[listener] = why
            }
            candidates = nil
            reporter.send(.passedOver(listener: listener.description, pid: attempt.owner, why: why))
        case .unavailable(let why):
            if unavailable.updateValue(.other(why), forKey: listener) != .other(why) { candidates = nil }
        }
    }

    /// Why nothing is found yet, from what the last scan saw and what the attempts said.
    private func explain() {
        guard found.isEmpty, watched.isEmpty else { return }
        if lastScan.isEmpty {
            model.update(.notServing(.noListener))
            return
        }
        let candidates = self.candidates ?? lastScan.compactMap { listener in
            (rejected[listener] ?? unavailable[listener]).map { Reason.Candidate(listener: listener.description, why: $0) }
        }
        self.candidates = candidates
        // Until a listener has been judged, the reason stays what it was.
        if !candidates.isEmpty { model.update(.notServing(.noGRPCServer(candidates))) }
    }

    // MARK: EventSource

    private var given: [Int] = []

    func descriptors(into set: inout [pollfd]) {
        given.removeAll(keepingCapacity: true)
        for attempt in attempts {
            let start = set.count
            attempt.descriptors(into: &set)
            given.append(set.count - start)
        }
    }

    var wakeAt: Int64? {
        guard !stopped else { return nil }
        var earliest = [nextScan, retryAt].compactMap { $0 }.min() ?? .max
        for attempt in attempts { if let wake = attempt.wakeAt { earliest = min(earliest, wake) } }
        if named && retryAt == nil && credentials.svids?.latest != nil { earliest = 0 }
        return earliest == .max ? nil : earliest
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        guard !stopped else { return }
        var index = polled.startIndex
        let current = attempts
        for (offset, attempt) in current.enumerated() {
            let count = offset < given.count ? given[offset] : 0
            attempt.turn(polled[index..<min(index + count, polled.endIndex)], now: now)
            index += count
            judged(attempt)
        }
        let judgedNow = current.contains { $0.verdict != nil }
        if judgedNow || !current.isEmpty { explain() }
        let scanDue = nextScan.map { now >= $0 } ?? true
        step(now: now)
        // A SERVING held back for a listener that has now been judged (or for listeners that
        // kept appearing until the last scan) is asked for again.
        if judgedNow || scanDue { model.reconsider() }
    }
}
