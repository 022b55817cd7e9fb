import Client
import GateProtocol
import Glibc
import SystemCalls
import Wire

/// Watches the server found: Health/Watch on one kept-open connection, each status into the
/// health model as it arrives; a server without Watch gets a Check every interval. Ends when the
/// connection is lost (the agent redials after a pause, or looks again), or when the server sent
/// GOAWAY (the agent moves to a new connection at once).
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
    let started = MonotonicClock.now()

    init(_ server: Found, plan: AgentPlan, model: HealthModel, reporter: Reporter) {
        self.server = server
        self.plan = plan
        self.model = model
        self.reporter = reporter
        channel = Channel(target: server.target, security: server.security, userAgent: plan.userAgent,
                          connectTimeout: plan.connectTimeout, authority: plan.authority)
        watches = model.services.map { service in
            (service, channel.start(path: Health.watchPath, metadata: plan.metadata, request: Health.request(service: service),
                                    serverStreaming: true, timeout: nil))
        }
        if plan.configuration.answerInterval.nanoseconds > 0 { nextProof = started.addingSaturated(plan.configuration.answerInterval.nanoseconds) }
        progress(now: started)
    }

    private func progress(now: Int64) {
        guard end == nil else { return }
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
            if status.code == .unimplemented && status.fromServer {
                reporter.send(.noWatch(server: server.name, interval: plan.configuration.interval.nanoseconds))
                nextCheck = now
            } else {
                model.update(.notServing(Watcher.reason(ended.handle)))
                end = .lost
                return
            }
        }
        if !checks.isEmpty && checks.allSatisfy({ $0.handle.status != nil }) {
            for (service, handle) in checks {
                let status = handle.status!
                if status.code == .ok, let message = handle.nextMessage() {
                    model.answered(now: now)
                    report(message, service: service)
                } else if status.fromServer {
                    model.answered(now: now)
                    model.update(service: service, .notServing(.rpc(status)))
                } else {
                    model.update(service: service, .notServing(Watcher.reason(handle)))
                    if server.discovered && status.code == .unavailable {
                        end = .lost
                        return
                    }
                }
            }
            checks = []
        }
        if checks.isEmpty, let due = nextCheck, now >= due {
            // One round per interval, counted from each start: a change is seen within one interval.
            // Saturated: an interval of Go's largest duration means one round, then none.
            let interval = plan.configuration.interval.nanoseconds
            let next = due.addingSaturated(interval)
            nextCheck = next < now ? now.addingSaturated(interval) : next
            checks = model.services.map { service in
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
        if proof == nil, let due = nextProof, now >= due {
            nextProof = now.addingSaturated(plan.configuration.answerInterval.nanoseconds)
            proof = channel.start(path: Health.checkPath, metadata: plan.metadata, request: plan.request, timeout: plan.rpcTimeout)
        }
    }

    private func report(_ message: [UInt8], service: String) {
        do {
            let status = try Health.decodeResponse(message)
            model.update(service: service, status == .serving ? .serving(server: server.name) : .notServing(.status(status)))
        } catch {
            model.update(service: service, .notServing(.undecodable("\(error)")))
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
