import Flags
import SystemCalls

/// What the gate does about the server's health after its first SERVING: -exit-unhealthy-after
/// (not SERVING for that long), -exit-unresponsive-after (no answer from its health service for
/// that long), and the systemd watchdog (WATCHDOG=1 about every WATCHDOG_USEC/2, each only if
/// the server answered since the one before). Nothing here fires while draining. The times
/// only; the gate says the words.
struct HealthActions {
    enum Verdict: Equatable {
        case unhealthy(for: GoDuration)
        case unresponsive(for: GoDuration)
    }

    let unhealthyAfter: GoDuration?
    let unresponsiveAfter: GoDuration?
    /// Between watchdog pings (WATCHDOG_USEC/2); nil without a watchdog.
    let watchdogEvery: Int64?
    private var everServing = false
    private var notServingSince: Int64?
    private var lastAnswer: Int64 = 0
    private var draining = false
    private var fired = false
    private var nextPing: Int64?
    /// The ping before this one: an answer must have come after it.
    private var lastPing: Int64 = .min

    init(unhealthyAfter: GoDuration?, unresponsiveAfter: GoDuration?, watchdogUsec: Int64?, now: Int64) {
        self.unhealthyAfter = unhealthyAfter
        self.unresponsiveAfter = unresponsiveAfter
        watchdogEvery = watchdogUsec.map { max(1, $0 * 1_000 / 2) }
        nextPing = watchdogEvery.map { now + $0 }
    }

    /// How often the agent must prove the server answers (a Check), so that each of these has an
    /// answer to count on; zero when nothing needs it (and the idle agent does not wake).
    var answerInterval: Int64 {
        let wanted = [unresponsiveAfter.map { $0.nanoseconds / 4 }, watchdogEvery.map { $0 / 2 }].compactMap { $0 }
        return wanted.min().map { max(10_000_000, $0) } ?? 0
    }

    mutating func serving(now: Int64) {
        everServing = true
        notServingSince = nil
        lastAnswer = now
    }

    mutating func notServing(now: Int64) {
        if everServing && notServingSince == nil { notServingSince = now }
    }

    mutating func answered(now: Int64) { lastAnswer = now }

    mutating func drain() { draining = true }

    /// When something here is due, if ever.
    var deadline: Int64? {
        var due = [nextPing]
        if everServing && !draining && !fired {
            if let unhealthyAfter, let since = notServingSince { due.append(since + unhealthyAfter.nanoseconds) }
            if let unresponsiveAfter { due.append(lastAnswer + unresponsiveAfter.nanoseconds) }
        }
        return due.compactMap { $0 }.min()
    }

    /// What is to be done now: a verdict (once), and whether to ping the watchdog.
    mutating func due(now: Int64) -> (verdict: Verdict?, ping: Bool) {
        var verdict: Verdict? = nil
        if everServing && !draining && !fired {
            if let unhealthyAfter, let since = notServingSince, now >= since + unhealthyAfter.nanoseconds {
                verdict = .unhealthy(for: unhealthyAfter)
            } else if let unresponsiveAfter, now >= lastAnswer + unresponsiveAfter.nanoseconds {
                verdict = .unresponsive(for: unresponsiveAfter)
            }
            if verdict != nil { fired = true }
        }
        var ping = false
        if let every = watchdogEvery, let at = nextPing, now >= at {
            nextPing = now + every
            // Before the first SERVING, start-up is -ready-timeout's to judge: the pings go on.
            ping = !everServing || lastAnswer > lastPing
            if ping { lastPing = now }
        }
        return (verdict, ping)
    }
}
