import Client
import GateProtocol
import Glibc
import SystemCalls
import Wire

/// Watches the server found: Health/Watch on one kept-open connection, each status into the
/// health model as it arrives; a server without Watch gets a Check every interval. A server
/// without a health service at all (UNIMPLEMENTED for the Check too, from the server itself) is,
/// with no -ready-service, ready because it answers gRPC: it gets no more Checks, and only the
/// loss of the kept connection (which wakes the agent) is news. Ends when the connection is
/// lost (the agent redials after a pause, or looks again), or when the server sent GOAWAY (the
/// agent moves to a new connection at once).
final class Watcher: EventSource {
    enum End {
        case lost
        case goAway
    }

    let server: Found
    let channel: Channel
    private(set) var end: End?
    private let plan: AgentPlan
    private let model: HealthModel
    private let reporter: Reporter
    /// One Watch per configured service, while the server has Watch.
    private var watches: [(service: String, handle: Channel.CallHandle)] = []
    /// Without Watch: the Checks of this interval, one per service.
    private var checks: [(service: String, handle: Channel.CallHandle)] = []
    /// Without Watch: when the next round of Checks starts.
    private var nextCheck: Int64?
    /// With an answer interval: the Check that proves the server still answers, and when the
    /// next one starts.
    private var proof: Channel.CallHandle?
    private var nextProof: Int64?
    /// The Watch was UNIMPLEMENTED: said once the first Check tells a server with Check from one
    /// without a health service.
    private var noWatchUnsaid = false
    /// The server has no health service: the kept connection is all there is to watch.
    private var withoutHealth = false
    /// With `-ready-service '*'`: the List under way; asked once per connection, and again
    /// when a watched service turns SERVICE_UNKNOWN (it may have left the list).
    private var list: Channel.CallHandle?
    let started = MonotonicClock.now()
    /// Without a health service: a connection that lived this long is followed by a new one at
    /// once when it closes; a shorter one waits out the agent's redial pause.
    static let settled: Int64 = 1_000_000_000

    init(_ server: Found, plan: AgentPlan, model: HealthModel, reporter: Reporter) {
        self.server = server
        self.plan = plan
        self.model = model
        self.reporter = reporter
        channel = Channel(target: server.target, security: server.security, userAgent: plan.userAgent,
                          connectTimeout: plan.connectTimeout, authority: plan.authority)
        if model.listing {
            if model.listUnimplementedBy.contains(server.name) {
                model.update(server: server.name, .notServing(Watcher.listUnimplemented))
            } else {
                askList()
            }
        } else {
            watchEach(model.services)
        }
        if plan.configuration.answerInterval.nanoseconds > 0 { nextProof = started.addingSaturated(plan.configuration.answerInterval.nanoseconds) }
        progress(now: started)
    }

    private func progress(now: Int64) {
        guard end == nil else { return }
        if let handle = list, let status = handle.status {
            list = nil
            if !listAnswered(handle, status, now: now) { return }
        }
        for (service, handle) in watches {
            while let message = handle.nextMessage() {
                model.answered(now: now)
                report(message, service: service)
            }
        }
        if !watches.isEmpty && channel.isDraining && watches.allSatisfy({ $0.handle.status == nil }) {
            // GOAWAY: the Watches move to a new connection (and, with -ready-spiffe, the newest
            // SVID) now, not when the server finally closes this one.
            reporter.send(.goAway(server: server.name))
            end = .goAway
            return
        }
        if let ended = watches.first(where: { $0.handle.status != nil }), let status = ended.handle.status {
            for other in watches where other.handle !== ended.handle { channel.cancel(other.handle) }
            watches = []
            if status.isServerUnimplemented {
                if model.readyWithoutHealth { noWatchUnsaid = true } else { reportNoWatch() }
                nextCheck = now
            } else {
                model.update(server: server.name, .notServing(status.fromServer ? .watchEnded(status) : Watcher.reason(ended.handle)))
                end = .lost
                return
            }
        }
        if !checks.isEmpty && checks.allSatisfy({ $0.handle.status != nil }) {
            for (service, handle) in checks {
                let status = handle.status!
                if status.isServerUnimplemented && model.readyWithoutHealth {
                    model.answered(now: now)
                    model.answeredWithoutHealth(server: server.name, status)
                    withoutHealth = true
                    noWatchUnsaid = false
                    nextCheck = nil
                    continue
                }
                if noWatchUnsaid { reportNoWatch() }
                if status.code == .ok, let message = handle.nextMessage() {
                    model.answered(now: now)
                    report(message, service: service)
                } else if status.fromServer || status.code == .ok {
                    // The server answered without a status to read (an OK without a response
                    // is grpc-go's "server sent no response message").
                    model.answered(now: now)
                    if case .rpcFailed(let failed) = Verdict(checkStatus: status, message: nil) {
                        model.update(server: server.name, service: service, .notServing(.rpc(failed)))
                    }
                } else {
                    model.update(server: server.name, service: service, .notServing(Watcher.reason(handle)))
                    if server.discovered && status.code == .unavailable {
                        end = .lost
                        return
                    }
                }
            }
            checks = []
            // A server without a health service beside one with it is listed, not waited
            // for: no more Checks (the idle agent does not wake for it), and only the loss of
            // its connection is news.
            if !model.counts(server: server.name) {
                nextCheck = nil
                withoutHealth = true
            }
        }
        if checks.isEmpty, let due = nextCheck, now >= due {
            // One round per interval, counted from each start: a change is seen within one interval.
            // Saturated: an interval of Go's largest duration means one round, then none.
            let interval = plan.configuration.interval.nanoseconds
            let next = due.addingSaturated(interval)
            nextCheck = next < now ? now.addingSaturated(interval) : next
            checks = model.services(of: server.name).map { service in
                (service, channel.start(path: Health.checkPath, metadata: plan.metadata, request: Health.request(service: service),
                                        timeout: plan.rpcTimeout))
            }
        }
        if let handle = proof, let status = handle.status {
            // Any answer from the server's health service proves it answers; no answer is the
            // supervisor's to count (-exit-unresponsive-after, the watchdog).
            if status.fromServer || !handle.messages.isEmpty { model.answered(now: now) }
            proof = nil
        }
        if withoutHealth && channel.connection == nil && proof == nil {
            // Nothing else tells that the server went away: its connection closing (or GOAWAY)
            // does. A connection that lived a while is followed by a new one at once, which
            // finds out whether the server is still there; one that did not is lost.
            if now - started >= Watcher.settled {
                end = .goAway
            } else {
                model.update(server: server.name, .notServing(.rpc(GRPCStatus(.unavailable, "the server closed the connection"))))
                end = .lost
            }
            return
        }
        if proof == nil, let due = nextProof, now >= due {
            nextProof = now.addingSaturated(plan.configuration.answerInterval.nanoseconds)
            proof = channel.start(path: Health.checkPath, metadata: plan.metadata, request: plan.request, timeout: plan.rpcTimeout)
        }
    }

    private func watchEach(_ services: [String]) {
        watches += services.map { service in
            (service, channel.start(path: Health.watchPath, metadata: plan.metadata, request: Health.request(service: service),
                                    serverStreaming: true, timeout: nil))
        }
    }

    private func askList() {
        guard list == nil else { return }
        list = channel.start(path: Health.listPath, metadata: plan.metadata, request: Health.listRequest, timeout: plan.rpcTimeout)
    }

    /// What -ready-service '*' is without a List: not ready, and why.
    static let listUnimplemented = Reason.service(GateConfiguration.everyListedService,
                                                  .rpc(GRPCStatus(.unimplemented, "the server has no Health/List to list its services")))

    /// The List's answer: the services to watch from now on. False when the watch ends here.
    private func listAnswered(_ handle: Channel.CallHandle, _ status: GRPCStatus, now: Int64) -> Bool {
        let every = GateConfiguration.everyListedService
        guard status.code == .ok, let message = handle.nextMessage() else {
            if status.fromServer { model.answered(now: now) }
            if status.isServerUnimplemented {
                // Remembered: this server is not asked again; nothing changes until it is gone.
                model.listUnimplementedBy.insert(server.name)
                model.update(server: server.name, .notServing(Watcher.listUnimplemented))
                return true
            }
            // Any other failure (RESOURCE_EXHAUSTED for more than 100 services among them) is
            // retried as a Watch's is: on a new connection, after the redial pause.
            model.update(server: server.name, .notServing(.service(every, Watcher.reason(handle))))
            end = .lost
            return false
        }
        model.answered(now: now)
        let listed: [String]
        do {
            listed = try Health.decodeListResponse(message).map(\.service)
        } catch {
            // Past the list's cap the server's answer is a status of its own; anything else does
            // not decode.
            let why: Reason = if case .tooMany = error { .rpc(GRPCStatus(.resourceExhausted, error.description)) } else { .undecodable("\(error)") }
            model.update(server: server.name, .notServing(.service(every, why)))
            end = .lost
            return false
        }
        for index in watches.indices.reversed() where !listed.contains(watches[index].service) {
            channel.cancel(watches[index].handle)
            watches.remove(at: index)
        }
        let new = listed.filter { name in !watches.contains { $0.service == name } }
        model.listed(server: server.name, listed)
        if nextCheck == nil && checks.isEmpty { watchEach(new) }
        return true
    }

    private func reportNoWatch() {
        noWatchUnsaid = false
        reporter.send(.noWatch(server: server.name, interval: plan.configuration.interval.nanoseconds))
    }

    private func report(_ message: [UInt8], service: String) {
        model.answeredWithHealth(server: server.name)
        do {
            let status = try Health.decodeResponse(message)
            model.update(server: server.name, service: service, status == .serving ? .serving(server: server.name) : .notServing(.status(status)))
            // A listed service that turned unknown may have left the list.
            if model.listing && status == .serviceUnknown { askList() }
        } catch {
            model.update(server: server.name, service: service, .notServing(.undecodable("\(error)")))
        }
    }

    /// Why a health call ended without an answer: no connection could be made, or the status
    /// it ended with.
    static func reason(_ handle: Channel.CallHandle) -> Reason {
        if let failure = handle.dialFailure { return .unreachable(failure.unreachable) }
        return .rpc(handle.status ?? GRPCStatus(.unavailable, "the call ended without a status"))
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) { channel.descriptors(into: &set) }

    var wakeAt: Int64? {
        guard end == nil else { return nil }
        var earliest = channel.wakeAt ?? .max
        if checks.isEmpty, let nextCheck { earliest = min(earliest, nextCheck) }
        if proof == nil, let nextProof { earliest = min(earliest, nextProof) }
        return earliest == .max ? nil : earliest
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        channel.turn(polled, now: now)
        progress(now: now)
    }
}
