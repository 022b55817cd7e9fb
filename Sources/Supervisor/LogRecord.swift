import Flags
import GateProtocol
import Glibc
import SystemCalls

/// How grpc-init's own lines are written (-log-format): `[grpc-init] ...` text, or one JSON
/// object per line. The child's output is never touched.
public enum LogFormat: String, Equatable, Sendable {
    case text
    case json
}

/// A typed value of a log line. A line is a message and its fields, rendered once per format:
/// the text line says the message only, the JSON line the message and every field.
enum LogValue: Equatable {
    case string(String)
    case integer(Int64)
    /// A span in nanoseconds, written as seconds: an exact decimal, never a float's rounding.
    case seconds(Int64)
    case bool(Bool)
    case strings([String])
}

struct LogField: Equatable {
    let key: String
    let value: LogValue

    init(_ key: String, _ value: LogValue) {
        self.key = key
        self.value = value
    }

    static func string(_ key: String, _ value: String) -> LogField { LogField(key, .string(value)) }
    static func integer(_ key: String, _ value: some BinaryInteger) -> LogField { LogField(key, .integer(Int64(clamping: value))) }
    static func seconds(_ key: String, _ span: GoDuration) -> LogField { LogField(key, .seconds(span.nanoseconds)) }
    static func seconds(_ key: String, nanoseconds: Int64) -> LogField { LogField(key, .seconds(nanoseconds)) }
    static func pid(_ pid: Int32) -> LogField { integer("pid", pid) }
    static func command(_ name: String) -> LogField { string("command", name) }
    static func error(_ cause: some CustomStringConvertible) -> LogField { string("error", cause.description) }

    /// A signal by its name (`signal`: "SIGTERM") and its number (`signal_number`: 15).
    static func signal(_ signo: Int32, key: String = "signal") -> [LogField] {
        [string(key, Signals.name(signo)), integer(key + "_number", signo)]
    }

    /// How a process ended: `exit_code`, or the signal that killed it.
    static func ended(_ status: WaitStatus) -> [LogField] {
        if let code = status.exitCode { return [integer("exit_code", code)] }
        return signal(status.raw & 0x7F)
    }

    /// Why the server is not ready, as data: `reason` is the case of GateProtocol's Reason
    /// ("rpc", "unreachable", "status", ...); the service it is about, and what each kind carries.
    static func reason(_ reason: Reason) -> [LogField] {
        var fields: [LogField] = []
        if case .service(let name, _) = reason { fields.append(string("service", name)) }
        if case .server(let name, _) = reason.withoutService { fields.append(string("server", name)) }
        let inner = reason.innermost
        fields.append(string("reason", LogField.caseName(inner)))
        switch inner {
        case .status(let status):
            fields.append(string("status", status.description))
        case .rpc(let status), .watchEnded(let status):
            fields.append(string("grpc_code", GRPCStatusCode(rawValue: status.rawCode)?.goName ?? "Code(\(status.rawCode))"))
            fields.append(integer("grpc_code_number", status.rawCode))
            fields.append(string("grpc_message", status.message))
            fields.append(LogField("from_server", .bool(status.fromServer)))
        case .unreachable(let why):
            fields.append(string("unreachable", LogField.kindName(why.kind)))
            fields.append(string("detail", why.detail))
        case .undecodable(let text), .setup(let text):
            fields.append(string("detail", text))
        case .noGRPCServer(let candidates):
            fields.append(LogField("candidates", .strings(candidates.map { "\($0.listener): \($0.why)" })))
        case .starting, .noListener, .noProc, .draining, .awaitingAnswer, .service, .server:
            break
        }
        return fields
    }

    /// The Reason's case name, as the source spells it.
    static func caseName(_ reason: Reason) -> String {
        switch reason {
        case .starting: return "starting"
        case .noListener: return "noListener"
        case .noProc: return "noProc"
        case .noGRPCServer: return "noGRPCServer"
        case .unreachable: return "unreachable"
        case .status: return "status"
        case .rpc: return "rpc"
        case .watchEnded: return "watchEnded"
        case .undecodable: return "undecodable"
        case .setup: return "setup"
        case .draining: return "draining"
        case .awaitingAnswer: return "awaitingAnswer"
        case .service: return "service"
        case .server: return "server"
        }
    }

    static func kindName(_ kind: Unreachable.Kind) -> String {
        switch kind {
        case .resolve: return "resolve"
        case .connect: return "connect"
        case .certificate: return "certificate"
        case .handshake: return "handshake"
        case .timeout: return "timeout"
        }
    }
}

/// An instant of the real-time clock, for the `time` of JSON lines.
struct WallTime: Equatable {
    var seconds: Int64
    var nanoseconds: Int64

    static func now() -> WallTime {
        let now = WallClock.now()
        return WallTime(seconds: now / 1_000_000_000, nanoseconds: now % 1_000_000_000)
    }

    /// RFC 3339 in UTC to the microsecond: "2026-12-07T17:03:07.123456Z". The proleptic
    /// Gregorian calendar from the day count (H. Hinnant's civil_from_days); any Int64 renders
    /// without trapping (years past 9999 with more digits).
    var rfc3339: String {
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let micro = min(max(nanoseconds, 0), 999_999_999) / 1_000
        let yearText = year >= 0 ? WallTime.digits(year, 4) : "-" + WallTime.digits(0 - year, 4)
        return yearText + "-" + WallTime.digits(month, 2) + "-" + WallTime.digits(day, 2) + "T"
            + WallTime.digits(secondOfDay / 3_600, 2) + ":" + WallTime.digits(secondOfDay / 60 % 60, 2) + ":"
            + WallTime.digits(secondOfDay % 60, 2) + "." + WallTime.digits(micro, 6) + "Z"
    }

    private static func digits(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

/// One JSON object per line (RFC 8259): `time`, `level`, `msg`, then the fields. Strings are
/// Swift strings, valid Unicode by construction (bytes that were not UTF-8 became U+FFFD where
/// they were decoded), so the output is valid UTF-8; `"`, `\`, C0 and C1 controls, DEL, U+2028
/// and U+2029 are escaped. A line never exceeds `maxBytes`: the longest strings are cut (on a
/// character, marked "...") until it fits, so a line is never cut mid-object.
enum JSONLogLine {
    /// Room under LogStream.maxLine for the dropped-lines notice that may go in front of a line
    /// in the same write.
    static let maxBytes = LogStream.maxLine - 256

    static func render(time: WallTime, level: String, message: String, fields: [LogField], maxBytes: Int = maxBytes) -> String {
        // Every string of the line, in order; the rest of the line is fixed.
        var strings: [String] = [message]
        for field in fields {
            switch field.value {
            case .string(let s): strings.append(s)
            case .strings(let list): strings.append(contentsOf: list)
            case .integer, .seconds, .bool: break
            }
        }
        let full = strings.map(escapedCount)
        let fixed = assemble(time: time, level: level, fields: fields, strings: strings.map { _ in [] }).count
        var limits = full
        if fixed + full.reduce(0, +) > maxBytes {
            // Fair shares of what is left, shortest first: short strings stay whole, the long ones
            // share the rest equally.
            var left = max(0, maxBytes - fixed)
            let order = full.indices.sorted { full[$0] < full[$1] }
            for (position, index) in order.enumerated() {
                let share = left / (order.count - position)
                limits[index] = min(full[index], share)
                left -= limits[index]
            }
        }
        let escaped = strings.indices.map { escape(strings[$0], limit: limits[$0], full: full[$0]) }
        return String(decoding: assemble(time: time, level: level, fields: fields, strings: escaped), as: UTF8.self)
    }

    private static func assemble(time: WallTime, level: String, fields: [LogField], strings: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        var next = 0
        func quoted(_ bytes: [UInt8]) {
            out.append(0x22)
            out.append(contentsOf: bytes)
            out.append(0x22)
        }
        func key(_ name: String) {
            out.append(contentsOf: ",\"".utf8)
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: "\":".utf8)
        }
        out.append(contentsOf: "{\"time\":\"".utf8)
        out.append(contentsOf: time.rfc3339.utf8)
        out.append(contentsOf: "\",\"level\":\"".utf8)
        out.append(contentsOf: level.utf8)
        out.append(contentsOf: "\",\"msg\":".utf8)
        quoted(strings[next])
        next += 1
        for field in fields {
            key(field.key)
            switch field.value {
            case .string:
                quoted(strings[next])
                next += 1
            case .strings(let list):
                out.append(0x5B)
                for index in list.indices {
                    if index > 0 { out.append(0x2C) }
                    quoted(strings[next])
                    next += 1
                }
                out.append(0x5D)
            case .integer(let n): out.append(contentsOf: String(n).utf8)
            case .seconds(let ns): out.append(contentsOf: GoDuration.decimalSeconds(ns).utf8)
            case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
            }
        }
        out.append(0x7D)
        return out
    }

    private static func escapedCount(_ text: String) -> Int {
        var count = 0
        for scalar in text.unicodeScalars { count += pieceCount(scalar) }
        return count
    }

    /// `text` escaped, at most `limit` bytes: cut on a character and ended with "..." when it
    /// does not fit.
    private static func escape(_ text: String, limit: Int, full: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(min(limit, full))
        let room = full <= limit ? full : max(0, limit - 3)
        for scalar in text.unicodeScalars {
            if out.count + pieceCount(scalar) > room { break }
            appendPiece(scalar, to: &out)
        }
        if full > limit && limit >= 3 { out.append(contentsOf: "...".utf8) }
        return out
    }

    private static func needsUnicodeEscape(_ value: UInt32) -> Bool {
        value < 0x20 || (0x7F..<0xA0).contains(value) || value == 0x2028 || value == 0x2029
    }

    private static func pieceCount(_ scalar: Unicode.Scalar) -> Int {
        switch scalar.value {
        case 0x22, 0x5C, 0x0A, 0x0D, 0x09, 0x08, 0x0C: return 2
        case let v where needsUnicodeEscape(v): return 6
        case let v: return v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4
        }
    }

    private static func appendPiece(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        switch scalar.value {
        case 0x22: out.append(contentsOf: [0x5C, 0x22])
        case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
        case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
        case 0x0D: out.append(contentsOf: [0x5C, 0x72])
        case 0x09: out.append(contentsOf: [0x5C, 0x74])
        case 0x08: out.append(contentsOf: [0x5C, 0x62])
        case 0x0C: out.append(contentsOf: [0x5C, 0x66])
        case let v where needsUnicodeEscape(v):
            let hex = Array("0123456789abcdef".utf8)
            out.append(contentsOf: [0x5C, 0x75, hex[Int(v >> 12 & 0xF)], hex[Int(v >> 8 & 0xF)], hex[Int(v >> 4 & 0xF)], hex[Int(v & 0xF)]])
        case let v where v < 0x80:
            out.append(UInt8(v))
        default:
            out.append(contentsOf: String(scalar).utf8)
        }
    }
}

extension SupervisorOptions {
    /// The format of the line that says the arguments are wrong, when they could not be parsed:
    /// the last -log-format among the flags (before `--` or the command), else
    /// GRPC_INIT_LOG_FORMAT. A value other than `text` means JSON: whoever asked for a format
    /// other than the default reads JSON more likely than text.
    static func logFormat(forErrorsIn arguments: [String], environment: (String) -> String?) -> LogFormat {
        let given = flagSet.rawValues(of: [Keys.logFormat.definition], in: arguments.map { Array($0.utf8) })[Keys.logFormat].last
        let chosen = given.map { String(decoding: $0, as: UTF8.self) }
            ?? environment(environmentName(Keys.logFormat.name)).flatMap { $0.isEmpty ? nil : $0 }
        return chosen.map { $0 == "text" ? .text : .json } ?? .text
    }
}
