import Flags
import Glibc
import SystemCalls

/// `[grpc-init]` lines on stderr: errors, warnings and events always, the rest with --verbose.
/// Never blocks: a line that cannot be written at once is dropped and counted (LogStream). One
/// line per event: control characters in what a line carries (a peer's status message, a
/// command's name) are escaped. Each line is a message and its typed fields, rendered once in
/// the format asked for: text says the message, JSON the message and the fields.
struct SupervisorLog {
    enum Level {
        /// With --verbose only.
        case info
        case event
        case warning
        case error

        /// The level of a JSON line: the lines of -v are "debug", events "info".
        var jsonName: String {
            switch self {
            case .info: return "debug"
            case .event: return "info"
            case .warning: return "warning"
            case .error: return "error"
            }
        }

        var textPrefix: String {
            switch self {
            case .info, .event: return "[grpc-init] "
            case .warning: return "[grpc-init] warning: "
            case .error: return "[grpc-init] error: "
            }
        }
    }

    let verbose: Bool
    let format: LogFormat
    private let stream: LogStream

    init(verbose: Bool, format: LogFormat = .text) {
        self.verbose = verbose
        self.format = format
        switch format {
        case .text:
            stream = LogStream(fd: STDERR_FILENO)
        case .json:
            stream = LogStream(fd: STDERR_FILENO, completesCutLines: true) { count in
                SupervisorLog.render(.json, .warning, LogStream.droppedMessage(count), [.integer("dropped", count)])
            }
        }
    }

    /// One line as `format` writes it, without the newline.
    static func render(_ format: LogFormat, _ level: Level, _ text: String, _ fields: [LogField] = []) -> String {
        switch format {
        case .text: return level.textPrefix + escapingControlCharacters(text)
        case .json: return JSONLogLine.render(time: WallTime.now(), level: level.jsonName, message: escapingControlCharacters(text), fields: fields)
        }
    }

    func writes(_ level: Level) -> Bool { level != .info || verbose }

    /// The descriptor to poll for room while the rest of a line waits, and its turn.
    var waitingDescriptor: Int32? { stream.waitingDescriptor }
    func writable() { stream.writable() }

    /// At exit: the rest of a line a socket took only in part, given a moment to go out.
    func finish() { stream.finish(within: 100_000_000) }

    func line(_ level: Level, _ text: String, _ fields: @autoclosure () -> [LogField] = []) {
        guard writes(level) else { return }
        stream.line(SupervisorLog.render(format, level, text, format == .json ? fields() : []))
    }

    func info(_ text: @autoclosure () -> String, _ fields: @autoclosure () -> [LogField] = []) {
        if verbose { line(.info, text(), fields()) }
    }
    func event(_ text: String, _ fields: @autoclosure () -> [LogField] = []) { line(.event, text, fields()) }
    func warning(_ text: String, _ fields: @autoclosure () -> [LogField] = []) { line(.warning, text, fields()) }
    func error(_ text: String, _ fields: @autoclosure () -> [LogField] = []) { line(.error, text, fields()) }
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
        /// Write it, after the line about what was held back (when anything was).
        case allowed(held: Held?)
        case refused
    }

    /// How many lines a window held back, and the limit they were held to.
    struct Held: Equatable {
        let count: Int
        let lines: Int
        let window: Int64

        var text: String {
            "\(count) line\(count == 1 ? "" : "s") about the server's health not logged: more than \(lines) in \(GoDuration(nanoseconds: window))"
        }

        var fields: [LogField] { [.integer("held", count), .integer("limit", lines), .seconds("window_seconds", nanoseconds: window)] }
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

    /// Past the window: a new one, and what the last one held back.
    mutating func flush(now: Int64) -> Held? {
        guard now >= windowStart.addingSaturated(window) else { return nil }
        let count = held
        windowStart = now
        used = 0
        held = 0
        guard count > 0 else { return nil }
        return Held(count: count, lines: lines, window: window)
    }
}
