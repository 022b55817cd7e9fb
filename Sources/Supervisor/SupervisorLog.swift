import Flags
import Glibc
import SystemCalls

/// `[grpc-init]` lines on stderr: errors, warnings and events always, the rest with --verbose.
/// Never blocks: a line that cannot be written at once is dropped and counted (LogStream). One
/// line per event: control characters in what a line carries (a peer's status message, a
/// command's name) are escaped.
struct SupervisorLog {
    enum Level {
        /// With --verbose only.
        case info
        case event
        case warning
        case error
    }

    let verbose: Bool
    private let stream = LogStream(fd: STDERR_FILENO)

    init(verbose: Bool) { self.verbose = verbose }

    func writes(_ level: Level) -> Bool { level != .info || verbose }

    func line(_ level: Level, _ text: String) {
        guard writes(level) else { return }
        let prefix: String
        switch level {
        case .info, .event: prefix = "[grpc-init] "
        case .warning: prefix = "[grpc-init] warning: "
        case .error: prefix = "[grpc-init] error: "
        }
        stream.line(prefix + escapingControlCharacters(text))
    }

    func info(_ text: @autoclosure () -> String) { if verbose { line(.info, text()) } }
    func event(_ text: String) { line(.event, text) }
    func warning(_ text: String) { line(.warning, text) }
    func error(_ text: String) { line(.error, text) }
}

/// A rate for lines a peer's behaviour causes (a server flapping its status, an agent that
/// reports without end): at most `lines` in each `window`; past that they are counted, not
/// written, and the count is said once the window is over. PID 1 does not become a log pump.
struct LineBudget {
    var lines = 20
    var window: Int64 = 10_000_000_000
    private var windowStart: Int64 = .min
    private var used = 0
    private var held = 0

    enum Answer: Equatable {
        /// Write it, after this line about what was held back (when anything was).
        case allowed(held: String?)
        case refused
    }

    /// When the held-back count is to be said, if anything is held back.
    var flushAt: Int64? { held > 0 ? windowStart.addingSaturated(window) : nil }

    mutating func take(now: Int64) -> Answer {
        let said = flush(now: now)
        if used < lines {
            used += 1
            return .allowed(held: said)
        }
        held += 1
        return .refused
    }

    /// Past the window: a new one, and the line about what the last one held back.
    mutating func flush(now: Int64) -> String? {
        guard now >= windowStart.addingSaturated(window) else { return nil }
        let count = held
        windowStart = now
        used = 0
        held = 0
        guard count > 0 else { return nil }
        return "\(count) line\(count == 1 ? "" : "s") about the server's health not logged: more than \(lines) in \(GoDuration(nanoseconds: window))"
    }
}
