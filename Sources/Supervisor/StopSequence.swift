import GateProtocol
import Glibc
import SystemCalls

/// What the supervisor decides, without doing any of it: events in (a signal, the child's exit,
/// what the health agent reports, a look at the leftovers, the clock reaching a deadline),
/// actions out. The supervisor's loop performs the actions and words them; the decisions, and
/// every deadline, live here alone, so that every ordering of events can be explored
/// (Tests/SupervisorTests/StopSequenceExplorationTests).
///
/// The rules it keeps: one stop sequence per run, begun by the first of a stop signal (the
/// -stop-signal, which drains; SIGTERM and SIGINT, which do not when another is the stop
/// signal), the -ready-timeout or a health action; once it has begun no other action or timeout
/// fires and grpc-init sends no stop signal of its own again (signals from outside are still
/// forwarded); no signal goes to the child once it is reaped; the child gets a signal as
/// -rewrite-signal rewrites it, while the sequence reacts to the signal received (one rewritten
/// to 0 is dropped and begins nothing), and grpc-init's own stop signal is the stop signal
/// rewritten; grpc-init exits once, with the child's status or the first cause's code. Instants
/// are nanoseconds of the monotonic clock, and every sum of an instant and a span saturates: a
/// span of Go's largest duration means "never".
struct StopSequence: Hashable {
    struct Configuration: Hashable {
        /// -drain-delay and -stop-signal: the stop signal reaches the child this long after it
        /// reached grpc-init (0: at once); the stop signal is the one grpc-init sends of its own
        /// too (the ready timeout, the health actions), both as rewritten.
        var drain = Drain()
        var stopSignal: Int32 {
            get { drain.signal }
            set { drain.signal = newValue }
        }
        /// -rewrite-signal: the signal the child gets for one received (0: none, dropped).
        var rewrites: [Int32: Int32] = [:]
        /// -grace: SIGKILL the child's group this long after a stop signal reached it (0: never).
        var grace: Int64 = 0
        /// -leftover-grace: once the child has exited, SIGKILL what it left this long after SIGTERM.
        var leftoverGrace: Int64 = 2_000_000_000
        /// -ready-timeout (0: none).
        var readyTimeout: Int64 = 0
        /// -exit-unhealthy-after: after the first SERVING, not SERVING (or no answer) this long.
        var unhealthyAfter: Int64? = nil
        /// -exit-unresponsive-after: after the first SERVING, no answer this long.
        var unresponsiveAfter: Int64? = nil
        /// WATCHDOG_USEC / 2 in nanoseconds: between watchdog pings (nil: no watchdog).
        var watchdogEvery: Int64? = nil
        /// -e: these exit codes of the child become 0.
        var remapExit: Set<Int32> = []
        /// How long processes killed with SIGKILL get to be reaped before grpc-init exits anyway.
        var killReapBound: Int64 = 1_000_000_000

        /// What the child gets for `signo` received: nil when a rewrite to 0 drops it.
        func passed(_ signo: Int32) -> Int32? {
            guard let to = rewrites[signo] else { return signo }
            return to == 0 ? nil : to
        }

        /// What the child gets when the stop signal reaches it: at the end of the drain, and for
        /// a stop of grpc-init's own. The options refuse a rewrite that drops the stop signal;
        /// were one given, the child would get the stop signal itself.
        var ownStopSignal: Int32 { passed(stopSignal) ?? stopSignal }

        /// The signals that begin the stop when they come first: the stop signal, and SIGTERM and
        /// SIGINT whatever the stop signal (a container runtime's and a terminal's).
        func beginsStop(_ signo: Int32) -> Bool { signo == stopSignal || signo == SIGTERM || signo == SIGINT }

        /// How often the agent must show that the server answers (a Check), so that the
        /// unresponsive and unhealthy timers and the watchdog have answers to count on; zero when
        /// nothing needs it (and the idle agent does not wake).
        var answerInterval: Int64 {
            let wanted = [unresponsiveAfter.map { $0 / 4 }, unhealthyAfter.map { $0 / 4 }, watchdogEvery.map { $0 / 2 }].compactMap { $0 }
            return wanted.min().map { max(10_000_000, $0) } ?? 0
        }
    }

    enum Event: Hashable {
        /// A signal for the child (any but SIGCHLD, which the loop turns into `childExited`).
        case signal(Int32)
        /// The child was reaped with this waitpid(2) status.
        case childExited(status: Int32)
        /// Whether anything the child left is still there (asked for with `lookForLeftovers`).
        case leftovers(remain: Bool)
        /// The agent's verdict on the server changed: SERVING or not.
        case health(serving: Bool)
        /// The server's health service answered (any status).
        case answered
        /// The health agent was started, or died: time without one says nothing of the server.
        case agent(running: Bool)
        /// The clock; deadlines that have passed are acted on.
        case tick
    }

    /// What began the stop.
    enum Cause: Hashable {
        case signal(Int32)
        /// -ready-timeout passed before the first SERVING.
        case notReady
        /// -exit-unhealthy-after passed (`answering`: the server still answered, not SERVING).
        case unhealthy(answering: Bool)
        /// -exit-unresponsive-after passed.
        case unresponsive

        /// grpc-init's exit status when this cause began the stop; nil: the child's.
        var exitStatus: Int32? {
            switch self {
            case .signal: return nil
            case .notReady: return StopSequence.notReadyExit
            case .unhealthy, .unresponsive: return StopSequence.unhealthyExit
            }
        }
    }

    enum Action: Hashable {
        /// Pass this signal to the child (or its group, with -g).
        case forward(Int32)
        /// -rewrite-signal: the `forward` that follows is `to`, for `from`.
        case rewritten(from: Int32, to: Int32)
        /// -rewrite-signal to 0: this signal received is not passed on, and begins nothing.
        case dropped(Int32)
        /// -grace passed: SIGKILL the child's process group.
        case killChild
        /// The stop began: STOPPING=1, once.
        case stopping
        /// The stop began by a health action or the ready timeout: say why (once).
        case stopBegun(Cause)
        /// The stop signal with -drain-delay: out of rotation now, the signal after the delay.
        case drain
        /// A second stop signal during the drain: passed on now.
        case drainCut(Int32)
        case pingWatchdog
        /// The child has exited: the health agent is no longer wanted.
        case childGone
        /// Answer with `leftovers(remain:)`: is anything the child left still there?
        case lookForLeftovers
        /// Signal what the child left (its group; as PID 1, everyone).
        case signalLeftovers(Int32)
        /// The leftovers outlived SIGKILL's bound: grpc-init exits without them.
        case leftoversAbandoned
        /// The child's exit code given to -e, passed on as 0.
        case remapped(Int32)
        case exit(Int32)
    }

    /// grpc-init's status when -ready-timeout passed before the child was ready (timeout(1)'s).
    static let notReadyExit: Int32 = 124
    /// grpc-init's status when -exit-unhealthy-after or -exit-unresponsive-after stopped the child.
    static let unhealthyExit: Int32 = 125

    private enum Stop: Hashable {
        case none
        /// The stop signal held back until `until`.
        case draining(until: Int64, cause: Cause)
        /// The stop signal reached the child.
        case signalled(cause: Cause)
    }

    private enum Child: Hashable {
        case running
        /// Reaped; what it left is being looked at, signalled, or waited for.
        case exited(status: Int32, cleanup: Cleanup)
    }

    private enum Cleanup: Hashable {
        case looking
        case terminating(until: Int64)
        case killing(until: Int64)
    }

    let configuration: Configuration
    private let started: Int64
    private var stop = Stop.none
    private var child = Child.running
    /// When -grace sends SIGKILL, once armed by a stop signal that reached the child.
    private var graceDeadline: Int64?
    private var everServing = false
    private var notServingSince: Int64?
    private var lastAnswer: Int64
    private var agentRunning = true
    /// The running agent has heard from the server since it was started.
    private var agentAnswered = false
    private var nextPing: Int64?
    /// The ping before this one: the server must have answered after it.
    private var lastPing: Int64 = .min
    private(set) var exitStatus: Int32?

    init(_ configuration: Configuration, now: Int64) {
        self.configuration = configuration
        started = now
        lastAnswer = now
        nextPing = configuration.watchdogEvery.map { now.addingSaturated($0) }
    }

    /// The stop has begun.
    var stopping: Bool { stop != .none }
    /// The child has been reaped.
    var childExited: Bool { if case .exited = child { return true } else { return false } }

    /// When the next deadline falls, if any: the loop ticks then.
    var wakeAt: Int64? {
        guard exitStatus == nil else { return nil }
        switch child {
        case .exited(_, .looking): return nil
        case .exited(_, .terminating(let until)), .exited(_, .killing(let until)): return until
        case .running: break
        }
        var due: [Int64?] = [graceDeadline, nextPing]
        if case .draining(let until, _) = stop { due.append(until) }
        if stop == .none {
            due.append(readyDeadline)
            due.append(unhealthyDeadline)
            due.append(unresponsiveDeadline)
        }
        return due.compactMap { $0 }.min()
    }

    private var readyDeadline: Int64? {
        configuration.readyTimeout > 0 && !everServing ? started.addingSaturated(configuration.readyTimeout) : nil
    }

    /// Not SERVING for the span, or no answer for the span (while an agent runs to ask), after
    /// the first SERVING.
    private var unhealthyDeadline: Int64? {
        guard everServing, let span = configuration.unhealthyAfter else { return nil }
        let silent = agentRunning ? lastAnswer.addingSaturated(span) : nil
        let notServing = notServingSince.map { $0.addingSaturated(span) }
        return [silent, notServing].compactMap { $0 }.min()
    }

    private var unresponsiveDeadline: Int64? {
        guard everServing, agentRunning, let span = configuration.unresponsiveAfter else { return nil }
        return lastAnswer.addingSaturated(span)
    }

    mutating func handle(_ event: Event, now: Int64) -> [Action] {
        guard exitStatus == nil else { return [] }
        var actions: [Action] = []
        switch event {
        case .signal(let signo):
            received(signo, now: now, into: &actions)
        case .childExited(let status):
            guard case .running = child else { break }
            child = .exited(status: status, cleanup: .looking)
            graceDeadline = nil
            actions += [.childGone, .lookForLeftovers]
        case .leftovers(let remain):
            guard case .exited(let status, let cleanup) = child else { break }
            if !remain {
                finish(status, into: &actions)
            } else if cleanup == .looking {
                child = .exited(status: status, cleanup: .terminating(until: now.addingSaturated(configuration.leftoverGrace)))
                actions.append(.signalLeftovers(SIGTERM))
            }
        case .health(let serving):
            guard stop == .none, case .running = child else { break }
            agentAnswered = true
            if serving {
                everServing = true
                notServingSince = nil
                lastAnswer = now
            } else if everServing && notServingSince == nil {
                notServingSince = now
            }
        case .answered:
            lastAnswer = max(lastAnswer, now)
            agentAnswered = true
        case .agent(let running):
            // A new agent gets the span to find the server and hear from it, when the one before
            // it had heard from the server: agents that die without an answer (a crash loop) do
            // not hold the silence off for ever.
            if running && !agentRunning {
                if agentAnswered { lastAnswer = max(lastAnswer, now) }
                agentAnswered = false
            }
            agentRunning = running
        case .tick:
            tick(now: now, into: &actions)
        }
        return actions
    }

    private mutating func received(_ signo: Int32, now: Int64, into actions: inout [Action]) {
        guard case .running = child else { return }
        guard configuration.passed(signo) != nil else {
            actions.append(.dropped(signo))
            return
        }
        let isStop = configuration.beginsStop(signo)
        switch stop {
        case .none where isStop:
            begin(.signal(signo), signal: signo, now: now, into: &actions)
        case .draining(_, let cause) where isStop:
            // A second stop signal cuts the drain short.
            stop = .signalled(cause: cause)
            actions.append(.drainCut(signo))
            signalChild(signo, now: now, into: &actions)
        default:
            // Any other signal, or a stop signal once the child has had one: forwarded as it came
            // (as rewritten).
            pass(signo, into: &actions)
        }
    }

    /// The stop begins: STOPPING=1, then the drain (for the stop signal, with -drain-delay) or
    /// the signal.
    private mutating func begin(_ cause: Cause, signal signo: Int32, now: Int64, into actions: inout [Action]) {
        actions.append(.stopping)
        if case .signal = cause {} else { actions.append(.stopBegun(cause)) }
        // The ready timeout does not drain: a server never ready is not in rotation.
        if configuration.drain.drains(signo) && cause != .notReady {
            stop = .draining(until: configuration.drain.ends(from: now), cause: cause)
            actions.append(.drain)
            return
        }
        stop = .signalled(cause: cause)
        signalChild(signo, now: now, into: &actions)
    }

    /// `signo` (received, or the stop signal of grpc-init's own) reaches the child as rewritten,
    /// and -grace starts.
    private mutating func signalChild(_ signo: Int32, now: Int64, into actions: inout [Action]) {
        pass(signo, into: &actions)
        if configuration.grace > 0 && graceDeadline == nil { graceDeadline = now.addingSaturated(configuration.grace) }
    }

    private func pass(_ signo: Int32, into actions: inout [Action]) {
        let passed = configuration.passed(signo) ?? signo
        if passed != signo { actions.append(.rewritten(from: signo, to: passed)) }
        actions.append(.forward(passed))
    }

    private mutating func tick(now: Int64, into actions: inout [Action]) {
        if case .exited(let status, let cleanup) = child {
            switch cleanup {
            case .looking:
                break
            case .terminating(let until) where now >= until:
                child = .exited(status: status, cleanup: .killing(until: now.addingSaturated(configuration.killReapBound)))
                actions.append(.signalLeftovers(SIGKILL))
            case .killing(let until) where now >= until:
                actions.append(.leftoversAbandoned)
                finish(status, into: &actions)
            default:
                break
            }
            return
        }
        if case .draining(let until, let cause) = stop, now >= until {
            stop = .signalled(cause: cause)
            signalChild(configuration.stopSignal, now: now, into: &actions)
        }
        if let deadline = graceDeadline, now >= deadline {
            graceDeadline = nil
            actions.append(.killChild)
        }
        if stop == .none {
            if let deadline = readyDeadline, now >= deadline {
                begin(.notReady, signal: configuration.stopSignal, now: now, into: &actions)
            } else if let deadline = unhealthyDeadline, now >= deadline {
                let answering = notServingSince.map { $0.addingSaturated(configuration.unhealthyAfter!) <= now } ?? false
                begin(.unhealthy(answering: answering), signal: configuration.stopSignal, now: now, into: &actions)
            } else if let deadline = unresponsiveDeadline, now >= deadline {
                begin(.unresponsive, signal: configuration.stopSignal, now: now, into: &actions)
            }
        }
        if let every = configuration.watchdogEvery, let at = nextPing, now >= at {
            nextPing = now.addingSaturated(every)
            // Before the first SERVING, start-up is -ready-timeout's to judge: the pings go on.
            if !everServing || lastAnswer > lastPing {
                lastPing = now
                actions.append(.pingWatchdog)
            }
        }
    }

    private mutating func finish(_ status: Int32, into actions: inout [Action]) {
        var code = WaitStatus(status).shellCode
        if let own = cause?.exitStatus {
            code = own
        } else if configuration.remapExit.contains(code) {
            actions.append(.remapped(code))
            code = 0
        }
        exitStatus = code
        actions.append(.exit(code))
    }

    /// What began the stop, once it has begun.
    var cause: Cause? {
        switch stop {
        case .none: return nil
        case .draining(_, let cause), .signalled(let cause): return cause
        }
    }
}
