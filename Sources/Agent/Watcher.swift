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
    private var watch: Channel.CallHandle?
    private var check: Channel.CallHandle?
    /// Without Watch: when the next Check starts.
    private var nextCheck: Int64?
    let started = MonotonicClock.now()

    init(_ server: Found, plan: AgentPlan, model: HealthModel, reporter: Reporter) {
        self.server = server
        self.plan = plan
        self.model = model
        self.reporter = reporter
        channel = Channel(target: server.target, security: server.security, userAgent: plan.userAgent,
                          connectTimeout: plan.connectTimeout, authority: plan.authority)
        watch = channel.start(path: Health.watchPath, metadata: plan.metadata, request: plan.request, serverStreaming: true, timeout: nil)
        progress(now: MonotonicClock.now())
    }

    private func progress(now: Int64) {
        guard end == nil else { return }
        if let watch {
            while let message = watch.nextMessage() { report(message) }
            if watch.status == nil && channel.isDraining {
                // GOAWAY: the Watch moves to a new connection (and, with -ready-spiffe, the newest
                // SVID) now, not when the server finally closes this one.
                reporter.send(.goAway(server: server.name))
                end = .goAway
                return
            }
            guard let status = watch.status else { return }
            self.watch = nil
            if status.code == .unimplemented && status.fromServer {
                reporter.send(.noWatch(server: server.name, interval: plan.configuration.interval.nanoseconds))
                nextCheck = now
            } else {
                model.update(.notServing(status.fromServer ? .watchEnded(status.description) : .callFailed(status.message)))
                end = .lost
                return
            }
        }
        if let check, let status = check.status {
            self.check = nil
            if status.code == .ok, let message = check.nextMessage() {
                report(message)
            } else if status.fromServer {
                model.update(.notServing(.callFailed(status.description)))
            } else {
                model.update(.notServing(.callFailed(status.message)))
                if server.discovered && status.code == .unavailable {
                    end = .lost
                    return
                }
            }
        }
        if check == nil, let due = nextCheck, now >= due {
            // One Check per interval, counted from each start: a change is seen within one interval.
            nextCheck = due + plan.configuration.interval.nanoseconds
            if nextCheck! < now { nextCheck = now + plan.configuration.interval.nanoseconds }
            check = channel.start(path: Health.checkPath, metadata: plan.metadata, request: plan.request, timeout: plan.rpcTimeout)
        }
    }

    private func report(_ message: [UInt8]) {
        do {
            let status = try Health.decodeResponse(message)
            model.update(status == .serving ? .serving(server: server.name) : .notServing(.status(status.description)))
        } catch {
            model.update(.notServing(.undecodable("\(error)")))
        }
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) { channel.descriptors(into: &set) }

    var wakeAt: Int64? {
        guard end == nil else { return nil }
        let earliest = min(channel.wakeAt ?? .max, check == nil ? nextCheck ?? .max : .max)
        return earliest == .max ? nil : earliest
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        channel.turn(polled, now: now)
        progress(now: now)
    }
}
