/// What the health agent tells the supervisor, one line each over a pipe: the supervisor owns
/// the words users read (log lines, the ready file, NOTIFY_SOCKET), the agent only the facts.
public enum HealthReport: Equatable, Sendable {
    /// The server reports SERVING; the text names it ("127.0.0.1:50051").
    case serving(String)
    /// The server is not serving, or cannot be reached: the text says why ("NOT_SERVING",
    /// "connection refused").
    case notServing(String)
    /// A line to log always (what was found, and how it is reached).
    case event(String)
    /// A line to log with -v.
    case info(String)

    /// The longest line either side writes or reads; longer text is cut.
    public static let maxLine = 1024

    public var line: String {
        switch self {
        case .serving(let text): return "serving " + HealthReport.clean(text)
        case .notServing(let text): return "unready " + HealthReport.clean(text)
        case .event(let text): return "event " + HealthReport.clean(text)
        case .info(let text): return "info " + HealthReport.clean(text)
        }
    }

    /// Parses one line (without its newline); nil for anything else.
    public init?(line: some StringProtocol) {
        guard let space = line.firstIndex(of: " ") else { return nil }
        let text = HealthReport.clean(String(line[line.index(after: space)...]))
        switch line[..<space] {
        case "serving": self = .serving(text)
        case "unready": self = .notServing(text)
        case "event": self = .event(text)
        case "info": self = .info(text)
        default: return nil
        }
    }

    /// Control characters escaped, C0, DEL and C1 (a peer's text may hold any), and the length
    /// capped, so one report is one line.
    public static func clean(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if out.utf8.count >= maxLine - 16 { return out + "..." }
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else if scalar.value >= 0x80 && scalar.value <= 0x9F {
                // C1 controls too: U+009B is a terminal's CSI, as ESC [ is.
                out += "\\u00" + String(scalar.value, radix: 16)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
