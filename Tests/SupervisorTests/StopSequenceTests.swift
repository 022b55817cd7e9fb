import Glibc
import Flags
import GateProtocol
import XCTest
@testable import Supervisor
import SystemCalls

private let ms: Int64 = 1_000_000
private let s: Int64 = 1_000_000_000
/// Go's largest duration, which every duration flag accepts.
private let goMax = Int64.max

/// waitpid(2) statuses.
private func exited(_ code: Int32) -> Int32 { code << 8 }
private func killed(_ signo: Int32) -> Int32 { signo }

/// The stop sequence driven through the cases that went wrong when nobody had ordered them.
final class StopSequenceTests: XCTestCase {
    /// Feeds events at the given instants (ticks in between as the loop would) and collects the
    /// actions.
    struct Run {
        var sequence: StopSequence
        var now: Int64 = 0
        var actions: [StopSequence.Action] = []

        init(_ configuration: StopSequence.Configuration) { sequence = StopSequence(configuration, now: 0) }

        /// Moves the clock to `instant`, ticking at each deadline on the way, as the reactor wakes.
        mutating func advance(to instant: Int64) {
            // Bounded: a sequence whose deadline stays due after its tick would spin the loop.
            for _ in 0..<1_000 {
                guard let due = sequence.wakeAt, due <= instant else { break }
                now = max(now, due)
                actions += sequence.handle(.tick, now: now)
            }
            now = instant
            actions += sequence.handle(.tick, now: now)
        }

        mutating func at(_ instant: Int64, _ event: StopSequence.Event) {
            advance(to: instant)
            actions += sequence.handle(event, now: now)
            actions += sequence.handle(.tick, now: now)
            if actions.last == .lookForLeftovers || (sequence.childExited && sequence.exitStatus == nil) {
                actions += sequence.handle(.leftovers(remain: false), now: now)
            }
        }

        var forwarded: [Int32] { actions.compactMap { if case .forward(let s) = $0 { return s } else { return nil } } }
    }

    func testAGracefulShutdownThatPassesThroughNotServingIsTheChildsExit() {
        var c = StopSequence.Configuration()
        c.unhealthyAfter = 500 * ms
        var run = Run(c)
        run.at(100 * ms, .health(serving: true))
        // The agent Checks every quarter of the span and says each answer.
        for t in stride(from: 225 * ms, through: 975 * ms, by: Int64.Stride(125 * ms)) { run.at(t, .answered) }
        run.at(1 * s, .signal(SIGTERM))
        run.at(1 * s + 10 * ms, .health(serving: false))
        run.at(3 * s, .childExited(status: exited(0)))
        XCTAssertEqual(run.sequence.exitStatus, 0)
        XCTAssertEqual(run.forwarded, [SIGTERM], "one SIGTERM, the one from outside")
        XCTAssertFalse(run.actions.contains { if case .stopBegun = $0 { return true } else { return false } })
    }

    func testASIGTERMBeforeReadyDisarmsTheReadyTimeout() {
        var c = StopSequence.Configuration()
        c.readyTimeout = 2 * s
        var run = Run(c)
        run.at(500 * ms, .signal(SIGTERM))
        run.at(3 * s, .childExited(status: exited(0)))
        XCTAssertEqual(run.sequence.exitStatus, 0)
        XCTAssertEqual(run.forwarded, [SIGTERM])
    }

    func testTheReadyTimeoutDoesNotCutADrain() {
        var c = StopSequence.Configuration()
        c.readyTimeout = 2 * s
        c.drain.delay = GoDuration(nanoseconds: 5 * s)
        var run = Run(c)
        run.at(300 * ms, .health(serving: true))
        run.at(1 * s, .signal(SIGTERM))
        run.advance(to: 5 * s)
        XCTAssertEqual(run.forwarded, [], "still draining at 5 s")
        run.advance(to: 6 * s)
        XCTAssertEqual(run.forwarded, [SIGTERM])
        run.at(6 * s + 100 * ms, .childExited(status: exited(0)))
        XCTAssertEqual(run.sequence.exitStatus, 0)
    }

    func testTheReadyTimeoutBeforeAnyServingStopsTheChildOnceWith124() {
        var c = StopSequence.Configuration()
        c.readyTimeout = 2 * s
        c.drain.delay = GoDuration(nanoseconds: 5 * s)
        var run = Run(c)
        run.advance(to: 2 * s)
        XCTAssertEqual(run.forwarded, [SIGTERM], "a server never ready is not drained")
        run.at(2 * s + 10 * ms, .signal(SIGTERM))
        run.at(2 * s + 20 * ms, .childExited(status: killed(SIGTERM)))
        XCTAssertEqual(run.forwarded, [SIGTERM, SIGTERM], "the second is the one from outside, forwarded as it came")
        XCTAssertEqual(run.sequence.exitStatus, 124)
    }

    func testAServerThatStopsAnsweringIsUnhealthyWithoutAnUnresponsiveFlag() {
        var c = StopSequence.Configuration()
        c.unhealthyAfter = 1 * s
        XCTAssertEqual(c.answerInterval, 250 * ms, "the agent must Check for there to be answers to miss")
        var run = Run(c)
        run.at(100 * ms, .health(serving: true))
        run.at(300 * ms, .answered)
        run.advance(to: 1_299 * ms)
        XCTAssertEqual(run.forwarded, [])
        run.advance(to: 1_300 * ms)
        XCTAssertEqual(run.forwarded, [SIGTERM])
        XCTAssertTrue(run.actions.contains(.stopBegun(.unhealthy(answering: false))))
        run.at(1_400 * ms, .childExited(status: exited(0)))
        XCTAssertEqual(run.sequence.exitStatus, 125)
    }

    func testTimeWithoutAnAgentDoesNotCountAsTheServerSilent() {
        var c = StopSequence.Configuration()
        c.unhealthyAfter = 1 * s
        c.unresponsiveAfter = 1 * s
        var run = Run(c)
        run.at(100 * ms, .health(serving: true))
        run.at(200 * ms, .agent(running: false))
        run.advance(to: 5 * s)
        XCTAssertEqual(run.forwarded, [], "no agent to ask: nothing heard, nothing missed")
        run.at(5 * s, .agent(running: true))
        run.advance(to: 5_999 * ms)
        XCTAssertEqual(run.forwarded, [])
        run.advance(to: 6 * s)
        XCTAssertEqual(run.forwarded, [SIGTERM], "the new agent had the span to hear from the server")
    }

    func testAgentsThatDieWithoutAnAnswerDoNotHoldTheSilenceOff() {
        var c = StopSequence.Configuration()
        c.unresponsiveAfter = 1 * s
        var run = Run(c)
        run.at(100 * ms, .health(serving: true))
        run.at(200 * ms, .agent(running: false))
        for t in stride(from: 2 * s, through: 6 * s, by: Int64.Stride(1 * s)) {
            run.at(t, .agent(running: true))
            run.at(t + 100 * ms, .agent(running: false))
        }
        run.at(7 * s, .agent(running: true))
        XCTAssertTrue(run.actions.contains(.stopBegun(.unresponsive)), "a crash loop is no answer")
    }

    func testGoLargestDurationsMeanNeverAndDoNotTrap() {
        var c = StopSequence.Configuration()
        c.readyTimeout = goMax
        c.unhealthyAfter = goMax
        c.unresponsiveAfter = goMax
        c.grace = goMax
        c.drain.delay = GoDuration(nanoseconds: goMax)
        c.leftoverGrace = goMax
        c.watchdogEvery = goMax
        var run = Run(c)
        run.now = Int64.max - 10 * s  // a monotonic clock far along
        run.sequence = StopSequence(c, now: run.now)
        run.at(run.now + 1, .health(serving: true))
        run.at(run.now + 1, .signal(SIGTERM))
        XCTAssertEqual(run.forwarded, [], "draining for ever")
        run.at(run.now + 1, .signal(SIGTERM))
        XCTAssertEqual(run.forwarded, [SIGTERM], "a second SIGTERM passes it on")
        run.at(run.now + 1, .childExited(status: exited(0)))
        XCTAssertEqual(run.sequence.exitStatus, 0)
    }

    func testAGateCauseKeepsItsCodeWhateverTheChildsCodeAndRemapping() {
        var c = StopSequence.Configuration()
        c.readyTimeout = 1 * s
        c.remapExit = [124, 143]
        var run = Run(c)
        run.advance(to: 1 * s)
        run.at(1_100 * ms, .childExited(status: exited(124)))
        XCTAssertEqual(run.sequence.exitStatus, 124)
        var plain = Run(StopSequence.Configuration(remapExit: [143]))
        plain.at(10 * ms, .childExited(status: exited(143)))
        XCTAssertEqual(plain.sequence.exitStatus, 0)
        XCTAssertTrue(plain.actions.contains(.remapped(143)))
    }

    func testLeftoversGetSIGTERMThenSIGKILLThenAreLeft() {
        var c = StopSequence.Configuration()
        c.leftoverGrace = 2 * s
        var sequence = StopSequence(c, now: 0)
        XCTAssertEqual(sequence.handle(.childExited(status: exited(3)), now: 0), [.childGone, .lookForLeftovers])
        XCTAssertEqual(sequence.handle(.leftovers(remain: true), now: 0), [.signalLeftovers(SIGTERM)])
        XCTAssertEqual(sequence.wakeAt, 2 * s)
        XCTAssertEqual(sequence.handle(.signal(SIGTERM), now: 1 * s), [], "nothing goes to a reaped child")
        XCTAssertEqual(sequence.handle(.tick, now: 2 * s), [.signalLeftovers(SIGKILL)])
        XCTAssertEqual(sequence.handle(.tick, now: 3 * s), [.leftoversAbandoned, .exit(3)])
        XCTAssertEqual(sequence.handle(.signal(SIGTERM), now: 4 * s), [])
    }

    /// The same run with SIGTERM as the stop signal, and with `stop` as it (the signals of the
    /// actions written back as SIGTERM): the drain, STOPPING=1, -grace and the exit alike.
    private func drainedRun(stopSignal stop: Int32) -> [StopSequence.Action] {
        var c = StopSequence.Configuration()
        c.stopSignal = stop
        c.drain.delay = GoDuration(nanoseconds: 1 * s)
        c.grace = 2 * s
        c.unhealthyAfter = 500 * ms
        var run = Run(c)
        run.at(100 * ms, .health(serving: true))
        run.at(200 * ms, .signal(stop))
        run.at(300 * ms, .health(serving: false))
        run.advance(to: 4 * s)
        run.at(4_100 * ms, .childExited(status: killed(SIGKILL)))
        XCTAssertEqual(run.sequence.exitStatus, 128 + SIGKILL)
        func asSIGTERM(_ signo: Int32) -> Int32 { signo == stop ? SIGTERM : signo }
        return run.actions.map { action in
            switch action {
            case .forward(let signo): return .forward(asSIGTERM(signo))
            case .drainCut(let signo): return .drainCut(asSIGTERM(signo))
            default: return action
            }
        }
    }

    func testAnotherStopSignalDrivesTheSequenceSIGTERMDrives() {
        let term = drainedRun(stopSignal: SIGTERM)
        XCTAssertEqual(term, [.stopping, .drain, .forward(SIGTERM), .killChild, .childGone, .lookForLeftovers, .exit(137)])
        for stop in [SIGQUIT, SIGUSR1, Signals.realTimeMin + 2] {
            XCTAssertEqual(drainedRun(stopSignal: stop), term, Signals.name(stop))
        }
    }

    func testWithAnotherStopSignalSIGTERMAndSIGINTStillStopAtOnceAndCutTheDrain() {
        var c = StopSequence.Configuration()
        c.stopSignal = SIGQUIT
        c.drain.delay = GoDuration(nanoseconds: 5 * s)
        c.grace = 10 * s
        for signo in [SIGTERM, SIGINT] {
            var run = Run(c)
            run.at(100 * ms, .signal(signo))
            XCTAssertEqual(run.actions, [.stopping, .forward(signo)], "not drained: the stop signal is SIGQUIT")
            XCTAssertEqual(run.sequence.wakeAt, 10 * s + 100 * ms, "-grace runs")
            var cut = Run(c)
            cut.at(100 * ms, .signal(SIGQUIT))
            cut.at(200 * ms, .signal(signo))
            XCTAssertEqual(cut.actions, [.stopping, .drain, .drainCut(signo), .forward(signo)])
        }
        // With the default stop signal, SIGQUIT is any other signal: forwarded as it came.
        var plain = Run(StopSequence.Configuration(drain: Drain(delay: GoDuration(nanoseconds: 5 * s))))
        plain.at(100 * ms, .signal(SIGQUIT))
        XCTAssertEqual(plain.actions, [.forward(SIGQUIT)])
        XCTAssertFalse(plain.sequence.stopping)
    }

    func testRewritesApplyToWhatIsForwardedAndTheStopReactsToWhatCame() {
        var c = StopSequence.Configuration()
        c.drain.delay = GoDuration(nanoseconds: 1 * s)
        c.rewrites = [SIGTERM: SIGQUIT, SIGHUP: SIGUSR2, SIGUSR1: 0]
        var run = Run(c)
        run.at(100 * ms, .signal(SIGHUP))
        run.at(200 * ms, .signal(SIGUSR1))
        run.at(300 * ms, .signal(SIGTERM))
        XCTAssertEqual(run.actions, [.rewritten(from: SIGHUP, to: SIGUSR2), .forward(SIGUSR2), .dropped(SIGUSR1), .stopping, .drain],
                       "SIGTERM received begins the drain; a dropped signal begins nothing")
        run.advance(to: 1_300 * ms)
        XCTAssertEqual(run.forwarded, [SIGUSR2, SIGQUIT], "the child gets the stop signal as rewritten at the end of the drain")
        XCTAssertEqual(Array(run.actions.suffix(2)), [.rewritten(from: SIGTERM, to: SIGQUIT), .forward(SIGQUIT)])
        run.at(1_400 * ms, .childExited(status: killed(SIGQUIT)))
        XCTAssertEqual(run.sequence.exitStatus, 128 + SIGQUIT)
    }

    func testAStopOfGrpcInitsOwnSendsTheStopSignalAsRewritten() {
        var c = StopSequence.Configuration()
        c.stopSignal = SIGUSR1
        c.rewrites = [SIGUSR1: SIGINT]
        c.readyTimeout = 1 * s
        var run = Run(c)
        run.advance(to: 1 * s)
        XCTAssertEqual(run.actions, [.stopping, .stopBegun(.notReady), .rewritten(from: SIGUSR1, to: SIGINT), .forward(SIGINT)])
        run.at(1_100 * ms, .childExited(status: exited(0)))
        XCTAssertEqual(run.sequence.exitStatus, 124)
    }

    func testADroppedSIGTERMBeginsNothing() {
        var c = StopSequence.Configuration()
        c.stopSignal = SIGQUIT
        c.rewrites = [SIGTERM: 0]
        c.grace = 1 * s
        var run = Run(c)
        run.at(100 * ms, .signal(SIGTERM))
        XCTAssertEqual(run.actions, [.dropped(SIGTERM)])
        XCTAssertFalse(run.sequence.stopping)
        XCTAssertNil(run.sequence.wakeAt, "no -grace")
    }
}

/// Every ordering of events up to a depth, for several configurations, against the invariants
/// written once in `Explorer.check`. scripts/fuzz.sh stop-sequence explores deeper.
final class StopSequenceExplorationTests: XCTestCase {
    func testEveryOrderingKeepsTheInvariants() {
        let depth = Int(TestEnvironment.value("GRPC_INIT_EXPLORE_DEPTH") ?? "") ?? 7
        var total = 0
        for (name, configuration) in Explorer.configurations {
            var explorer = Explorer(configuration)
            explorer.explore(depth: depth)
            XCTAssertEqual(explorer.violations, [], name)
            XCTAssertGreaterThan(explorer.states, 100, name)
            total += explorer.states
            print("stop sequence \(name): depth \(depth), \(explorer.states) states, \(explorer.transitions) transitions")
        }
        print("stop sequence: \(total) states explored in all")
    }

    func testTheCheckerCatchesABrokenSequence() {
        // A second stop of grpc-init's own, as the old supervisor sent after a health action
        // during a shutdown: the invariants must see it.
        var track = Explorer.Track()
        var violations: [String] = []
        Explorer.check(event: .tick, actions: [.stopping, .forward(SIGTERM)], after: StopSequence(.init(), now: 0),
                       now: 0, track: &track, configuration: .init(), violations: &violations)
        Explorer.check(event: .tick, actions: [.stopping, .forward(SIGTERM)], after: StopSequence(.init(), now: 0),
                       now: 1, track: &track, configuration: .init(), violations: &violations)
        XCTAssertFalse(violations.isEmpty)
    }
}

enum TestEnvironment {
    static func value(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

/// A breadth-first walk over the stop sequence's states: from each, every event the world can
/// send (signals, the child's exit with several statuses, health reports, the clock moving to
/// the next deadline or a little), states seen before not walked again.
struct Explorer {
    static let configurations: [(String, StopSequence.Configuration)] = {
        var plain = StopSequence.Configuration()
        plain.leftoverGrace = 1 * s
        var everything = StopSequence.Configuration()
        everything.drain.delay = GoDuration(nanoseconds: 1 * s)
        everything.grace = 2 * s
        everything.leftoverGrace = 500 * ms
        everything.readyTimeout = 1_500 * ms
        everything.unhealthyAfter = 500 * ms
        everything.unresponsiveAfter = 1 * s
        everything.watchdogEvery = 400 * ms
        everything.remapExit = [143, 124]
        var largest = StopSequence.Configuration()
        largest.drain.delay = GoDuration(nanoseconds: goMax)
        largest.grace = goMax
        largest.leftoverGrace = goMax
        largest.readyTimeout = goMax
        largest.unhealthyAfter = goMax
        largest.unresponsiveAfter = goMax
        largest.watchdogEvery = goMax
        largest.killReapBound = goMax
        var drainAndTimeout = StopSequence.Configuration()
        drainAndTimeout.drain.delay = GoDuration(nanoseconds: 5 * s)
        drainAndTimeout.readyTimeout = 2 * s
        var unhealthyOnly = StopSequence.Configuration()
        unhealthyOnly.unhealthyAfter = 1 * s
        unhealthyOnly.grace = 1 * s
        var quit = everything
        quit.stopSignal = SIGQUIT
        var quitRewritten = quit
        quitRewritten.remapExit = []
        quitRewritten.rewrites = [SIGQUIT: SIGUSR2, SIGTERM: SIGQUIT, SIGHUP: 0]
        return [("plain", plain), ("everything", everything), ("Go's largest", largest),
                ("drain and ready timeout", drainAndTimeout), ("unhealthy only", unhealthyOnly),
                ("SIGQUIT stops", quit), ("SIGQUIT stops, signals rewritten", quitRewritten)]
    }()

    /// What the run did so far, for the invariants that span several steps.
    struct Track: Hashable {
        var stoppings = 0
        var ownStopSignals = 0
        var cause: StopSequence.Cause?
        var childStatus: Int32?
        var exited = false
        var everServing = false
        var graceDue: Int64?
        var killed = false
        var drainDue: Int64?
        var signalledAfterDrain = false
        /// When the leftovers got SIGTERM, and when SIGKILL.
        var terminatedAt: Int64?
        var killedAt: Int64?
        /// The sequence asked to be told about the leftovers: the loop answers before anything else.
        var awaitingLook = false
    }

    struct Node: Hashable {
        var sequence: StopSequence
        var now: Int64
        var track: Track
    }

    let configuration: StopSequence.Configuration
    private(set) var states = 0
    private(set) var transitions = 0
    private(set) var violations: [String] = []
    private var seen: Set<Node> = []

    init(_ configuration: StopSequence.Configuration) { self.configuration = configuration }

    private static let start: Int64 = 1_000 * s

    mutating func explore(depth: Int) {
        let root = Node(sequence: StopSequence(configuration, now: Explorer.start), now: Explorer.start, track: Track())
        var frontier = [root]
        seen.insert(root)
        for _ in 0..<depth {
            var next: [Node] = []
            for node in frontier {
                for (event, now) in moves(from: node) {
                    transitions += 1
                    var child = node
                    child.now = now
                    let actions = child.sequence.handle(event, now: now)
                    Explorer.check(event: event, actions: actions, after: child.sequence, now: now,
                                   track: &child.track, configuration: configuration, violations: &violations)
                    if violations.count > 20 { return }
                    if seen.insert(child).inserted { next.append(child) }
                }
            }
            states += frontier.count
            frontier = next
        }
        states += frontier.count
    }

    private func moves(from node: Node) -> [(StopSequence.Event, Int64)] {
        let now = node.now
        if node.track.awaitingLook { return [(.leftovers(remain: true), now), (.leftovers(remain: false), now)] }
        var moves: [(StopSequence.Event, Int64)] = [
            (.signal(SIGTERM), now), (.signal(SIGINT), now), (.signal(SIGHUP), now), (.signal(SIGQUIT), now),
            (.childExited(status: exited(0)), now), (.childExited(status: killed(SIGTERM)), now),
            (.childExited(status: exited(143)), now), (.health(serving: true), now), (.health(serving: false), now),
            (.answered, now), (.agent(running: false), now), (.agent(running: true), now),
            (.tick, now.addingSaturated(300 * ms)),
        ]
        // Int64.max is "never": the reactor sets no timer for it.
        if let due = node.sequence.wakeAt, due != .max { moves.append((.tick, max(now, due))) }
        if node.track.childStatus != nil {
            moves.append((.leftovers(remain: true), now))
            moves.append((.leftovers(remain: false), now))
        }
        return moves
    }

    /// The invariants, for one step: `event` at `now` gave `actions`.
    static func check(event: StopSequence.Event, actions: [StopSequence.Action], after: StopSequence,
                      now: Int64, track: inout Track, configuration: StopSequence.Configuration, violations: inout [String]) {
        func fail(_ what: String) { violations.append("\(what): \(event) at \(now) gave \(actions)") }
        if track.exited && !actions.isEmpty { fail("an action after the exit") }
        let external: Int32? = { if case .signal(let s) = event { return s } else { return nil } }()
        if let external, configuration.passed(external) == nil, actions != [.dropped(external)], track.childStatus == nil {
            fail("a dropped signal did more than nothing")
        }
        // The stop signal, first, drains (while the child runs, with a delay): whatever it is.
        if let external, external == configuration.stopSignal, track.stoppings == 0, track.childStatus == nil,
           configuration.drain.delay.nanoseconds > 0, !actions.contains(.drain) {
            fail("the stop signal did not drain")
        }
        for action in actions {
            switch action {
            case .forward(let signo):
                if track.childStatus != nil { fail("a signal to a reaped child") }
                if let external, signo == configuration.passed(external) {
                    if configuration.beginsStop(external) && track.graceDue == nil && configuration.grace > 0 {
                        track.graceDue = now.addingSaturated(configuration.grace)
                    }
                } else {
                    if signo == configuration.ownStopSignal { track.ownStopSignals += 1 } else { fail("a signal nobody sent") }
                    if track.ownStopSignals > 1 { fail("a second stop signal of grpc-init's own") }
                    if track.graceDue == nil && configuration.grace > 0 { track.graceDue = now.addingSaturated(configuration.grace) }
                }
                if track.drainDue != nil { track.signalledAfterDrain = true }
            case .killChild:
                if track.childStatus != nil { fail("SIGKILL to a reaped child") }
                guard let due = track.graceDue, now >= due else { fail("SIGKILL before the grace"); break }
                track.killed = true
            case .stopping:
                track.stoppings += 1
                if track.stoppings > 1 { fail("a second stop sequence") }
                if let external { track.cause = .signal(external) }
            case .stopBegun(let cause):
                if !actions.contains(.stopping) { fail("a health action or timeout after the stop began") }
                track.cause = cause
            case .drain:
                if track.drainDue != nil { fail("a second drain") }
                if let external, external != configuration.stopSignal { fail("a drain begun by \(external), not the stop signal") }
                track.drainDue = now.addingSaturated(configuration.drain.delay.nanoseconds)
            case .signalLeftovers(let signo):
                if signo == SIGTERM { track.terminatedAt = now } else { track.killedAt = now }
            case .exit(let code):
                guard let status = track.childStatus else { fail("an exit before the child's"); break }
                var expected = track.cause?.exitStatus ?? WaitStatus(status).shellCode
                if track.cause?.exitStatus == nil && configuration.remapExit.contains(expected) { expected = 0 }
                if code != expected { fail("exit \(code), not \(expected)") }
                track.exited = true
            default:
                break
            }
        }
        if case .leftovers = event { track.awaitingLook = false }
        if actions.contains(.lookForLeftovers) { track.awaitingLook = true }
        switch event {
        case .childExited(let status) where track.childStatus == nil:
            track.childStatus = status
        case .health(serving: true) where track.stoppings == 0:
            track.everServing = true
        default:
            break
        }
        guard case .tick = event, !track.exited else { return }
        // No spin: after a tick every deadline lies ahead.
        if let due = after.wakeAt, due <= now { fail("a deadline already passed after the tick (\(due))") }
        // Every deadline met.
        if track.childStatus == nil {
            if let due = track.graceDue, now >= due, !track.killed { fail("-grace passed without SIGKILL") }
            if let due = track.drainDue, now >= due, !track.signalledAfterDrain { fail("the drain ended without the signal") }
            if configuration.readyTimeout > 0, !track.everServing, track.stoppings == 0,
               now >= Explorer.start.addingSaturated(configuration.readyTimeout) {
                fail("-ready-timeout passed without a stop")
            }
        } else if let at = track.killedAt, now >= at.addingSaturated(configuration.killReapBound) {
            fail("leftovers kept grpc-init past SIGKILL's bound")
        } else if let at = track.terminatedAt, track.killedAt == nil, now >= at.addingSaturated(configuration.leftoverGrace) {
            fail("-leftover-grace passed without SIGKILL")
        }
    }
}

final class LineBudgetTests: XCTestCase {
    func testAFloodOfLinesIsCountedNotWrittenAndTheCountIsSaidOnce() {
        var budget = LineBudget()
        var written = 0
        for i in 0..<600_000 where budget.take(now: Int64(i) * 10_000) != .refused { written += 1 }
        XCTAssertEqual(written, 20, "20 lines in the first 6 s, the rest held")
        XCTAssertEqual(budget.flushAt, 10 * s)
        XCTAssertNil(budget.flush(now: 10 * s - 1))
        XCTAssertEqual(budget.flush(now: 10 * s)?.text, "599980 lines about the server's health not logged: more than 20 in 10s")
        XCTAssertNil(budget.flushAt)
        XCTAssertEqual(budget.take(now: 10 * s + 1), .allowed(held: nil))
    }
}
