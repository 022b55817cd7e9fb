import Flags
import Foundation
import GateProtocol
import XCTest
@testable import Supervisor

final class JSONLogTests: XCTestCase {
    private let epoch = WallTime(seconds: 0, nanoseconds: 0)

    private func object(_ line: String, file: StaticString = #filePath, line number: UInt = #line) throws -> [String: Any] {
        XCTAssertFalse(line.contains("\n"), "one line", file: file, line: number)
        let data = Data(line.utf8)
        let parsed = try JSONSerialization.jsonObject(with: data)
        return try XCTUnwrap(parsed as? [String: Any], file: file, line: number)
    }

    /// Known instants: leap days (2000, 2024), a century that is not a leap year (1900, 2100),
    /// before the epoch, year 1 and 9999, and every digit of the microseconds.
    func testTimestampsAgainstKnownEpochs() {
        let cases: [(Int64, Int64, String)] = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 123_456_789, "2000-02-29T00:00:00.123456Z"),
            (951_868_799, 999_999_999, "2000-02-29T23:59:59.999999Z"),
            (946_684_799, 0, "1999-12-31T23:59:59.000000Z"),
            (1_709_164_800, 1_000, "2024-02-29T00:00:00.000001Z"),
            (1_709_164_800, 999, "2024-02-29T00:00:00.000000Z"),
            (4_107_455_999, 0, "2100-02-27T23:59:59.000000Z"),
            (4_107_542_400, 500, "2100-03-01T00:00:00.000000Z"),
            (-2_203_977_600, 0, "1900-02-28T00:00:00.000000Z"),
            (-1, 999_999, "1969-12-31T23:59:59.000999Z"),
            (-62_135_596_800, 0, "0001-01-01T00:00:00.000000Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000000Z"),
            (1_796_648_587, 123_456_000, "2026-12-07T13:03:07.123456Z"),
        ]
        for (seconds, nanoseconds, text) in cases {
            XCTAssertEqual(WallTime(seconds: seconds, nanoseconds: nanoseconds).rfc3339, text, "\(seconds)")
        }
        // Every instant renders, and a day after a day is the next date.
        _ = WallTime(seconds: .max, nanoseconds: .max).rfc3339
        _ = WallTime(seconds: .min, nanoseconds: .min).rfc3339
        var last = ""
        for day in Int64(-800)...Int64(800) {
            let text = WallTime(seconds: day * 86_400 * 50, nanoseconds: 0).rfc3339
            XCTAssertGreaterThan(text, last)
            last = text
        }
        // Against the C library's calendar, a day at a time over four centuries.
        for day in stride(from: Int64(-50_000), through: 100_000, by: 7) {
            var t = time_t(day * 86_400 + 45_296)
            var parts = tm()
            gmtime_r(&t, &parts)
            let expected = String(format: "%04d-%02d-%02dT%02d:%02d:%02d.000000Z", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                                  parts.tm_hour, parts.tm_min, parts.tm_sec)
            XCTAssertEqual(WallTime(seconds: day * 86_400 + 45_296, nanoseconds: 0).rfc3339, expected)
        }
    }

    func testTheNowIsTodaysUTC() throws {
        let text = WallTime.now().rfc3339
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try XCTUnwrap(formatter.date(from: text), text)
        XCTAssertLessThan(abs(date.timeIntervalSinceNow), 5)
    }

    func testSecondsAreExactDecimals() {
        let cases: [(Int64, String)] = [
            (0, "0"), (1_000_000_000, "1"), (1_500_000_000, "1.5"), (250_000_000, "0.25"), (1, "0.000000001"),
            (10_000_000_010, "10.00000001"), (-1_500_000_000, "-1.5"),
            (.max, "9223372036.854775807"), (.min, "-9223372036.854775808"),
        ]
        for (ns, text) in cases { XCTAssertEqual(GoDuration.decimalSeconds(ns), text) }
    }

    func testTheFieldsAreTyped() throws {
        let line = JSONLogLine.render(time: epoch, level: "info", message: "child pid 7 exited with status 3",
                                      fields: [.pid(7), .integer("exit_code", 3), .seconds("delay_seconds", GoDuration(nanoseconds: 2_500_000_000)),
                                               LogField("rotated", .bool(true)), LogField("services", .strings(["db", "api"]))]
                                        + LogField.signal(15))
        XCTAssertEqual(line, #"{"time":"1970-01-01T00:00:00.000000Z","level":"info","msg":"child pid 7 exited with status 3","pid":7,"exit_code":3,"#
                       + #""delay_seconds":2.5,"rotated":true,"services":["db","api"],"signal":"SIGTERM","signal_number":15}"#)
        let o = try object(line)
        XCTAssertEqual(o["delay_seconds"] as? Double, 2.5)
        XCTAssertEqual(o["signal_number"] as? Int, 15)
    }

    /// Whatever a peer put in a string: quotes, backslashes, every control character, DEL, C1,
    /// the line separators, characters of every UTF-8 length; and bytes that were not UTF-8.
    func testHostileTextIsEscaped() throws {
        var hostile = "\"quoted\" back\\slash \u{1b}[31mred\r\nnext\t\u{7f}\u{85}\u{9b}\u{2028}\u{2029} é € 😀"
        for c in 0..<0x20 { hostile.unicodeScalars.append(Unicode.Scalar(UInt8(c))) }
        let notUTF8 = String(decoding: [0x66, 0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x67], as: UTF8.self)
        let line = JSONLogLine.render(time: epoch, level: "warning", message: hostile,
                                      fields: [.string("grpc_message", hostile), .string("service", notUTF8), .string("k", "")])
        XCTAssertTrue(line.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }, "no control byte on the line")
        XCTAssertFalse(line.contains("\u{2028}") || line.contains("\u{85}"))
        XCTAssertTrue(line.contains(#"\"quoted\" back\\slash \u001b[31mred\r\nnext\t\u007f\u0085\u009b\u2028\u2029 é € 😀"#), line)
        XCTAssertTrue(line.contains(#"\u0000\u0001"#) && line.contains(#"\b\t\n\u000b\f\r"#), line)
        let o = try object(line)
        XCTAssertEqual(o["msg"] as? String, hostile)
        XCTAssertEqual(o["grpc_message"] as? String, hostile)
        XCTAssertEqual(o["service"] as? String, "f\u{FFFD}\u{FFFD}(\u{FFFD}\u{FFFD}\u{FFFD}g")
        XCTAssertEqual(o["k"] as? String, "")
    }

    /// A line fits what a pipe takes at once, with room for the dropped-lines notice: long
    /// strings are cut on a character, never the object.
    func testALongLineIsCutInsideItsStrings() throws {
        let long = String(repeating: "\u{1}é\"", count: 3_000)
        let line = JSONLogLine.render(time: epoch, level: "info", message: "short", fields: [.string("a", long), .string("b", long), .pid(1)])
        XCTAssertLessThanOrEqual(line.utf8.count, JSONLogLine.maxBytes)
        XCTAssertGreaterThan(line.utf8.count, JSONLogLine.maxBytes - 16)
        let o = try object(line)
        XCTAssertEqual(o["msg"] as? String, "short", "the short string stays whole")
        XCTAssertEqual(o["pid"] as? Int, 1)
        let a = try XCTUnwrap(o["a"] as? String)
        XCTAssertTrue(a.hasSuffix("...") && long.hasPrefix(a.dropLast(3)), a)
        for limit in [0, 1, 2, 3, 80, 120, 200] {
            let cut = JSONLogLine.render(time: epoch, level: "info", message: long, fields: [.string("b", long)], maxBytes: limit)
            XCTAssertNoThrow(try object(cut), "\(limit): still an object")
        }
    }

    func testReasonsAreTypedByCase() throws {
        let rpc = LogField.reason(.service("db\n", .rpc(GRPCStatus(rawCode: 14, message: "down \"now\"", fromServer: true))))
        XCTAssertEqual(rpc, [.string("service", "db\n"), .string("reason", "rpc"), .string("grpc_code", "Unavailable"),
                             .integer("grpc_code_number", 14), .string("grpc_message", "down \"now\""), LogField("from_server", .bool(true))])
        XCTAssertEqual(LogField.reason(.status(.notServing)), [.string("reason", "status"), .string("status", "NOT_SERVING")])
        XCTAssertEqual(LogField.reason(.unreachable(Unreachable(.connect, "connection refused"))),
                       [.string("reason", "unreachable"), .string("unreachable", "connect"), .string("detail", "connection refused")])
        XCTAssertEqual(LogField.reason(.noListener), [.string("reason", "noListener")])
        XCTAssertEqual(LogField.reason(.rpc(GRPCStatus(rawCode: 99, message: ""))).dropFirst().first, .string("grpc_code", "Code(99)"))
    }

    func testTheTextLineIsTodays() {
        XCTAssertEqual(SupervisorLog.render(.text, .warning, "a\nb"), "[grpc-init] warning: a\\nb")
        XCTAssertEqual(SupervisorLog.render(.text, .info, "x", [.pid(1)]), "[grpc-init] x")
        XCTAssertEqual(SupervisorLog.render(.text, .error, "x"), "[grpc-init] error: x")
    }

    /// The message says what the text line says: control characters escaped as there.
    func testTheJSONMessageIsTheTextLinesWords() throws {
        let o = try object(SupervisorLog.render(.json, .info, "health: rpc error: code = Unavailable desc = a\u{1b}b", [.pid(3)]))
        XCTAssertEqual(o["msg"] as? String, "health: rpc error: code = Unavailable desc = a\\x1bb")
        XCTAssertEqual(o["level"] as? String, "debug", "-v's lines")
        XCTAssertEqual(try object(SupervisorLog.render(.json, .event, "x"))["level"] as? String, "info")
    }

    func testTheFormatOfAnArgumentError() {
        func format(_ arguments: [String], _ variable: String? = nil) -> LogFormat {
            SupervisorOptions.logFormat(forErrorsIn: arguments, environment: { $0 == "GRPC_INIT_LOG_FORMAT" ? variable : nil })
        }
        XCTAssertEqual(format(["-bogus"]), .text)
        XCTAssertEqual(format(["-log-format", "json", "-bogus"]), .json)
        XCTAssertEqual(format(["-bogus", "--log-format=json"]), .json)
        XCTAssertEqual(format(["-log-format=yaml"]), .json, "not text: whoever asked reads JSON")
        XCTAssertEqual(format(["-bogus"], "json"), .json)
        XCTAssertEqual(format(["-log-format", "text"], "json"), .text, "the flag over the variable")
        XCTAssertEqual(format(["-grace", "-log-format", "-bogus"]), .text, "a value, not the flag")
        XCTAssertEqual(format(["-e", "143", "-log-format", "json"]), .json)
        XCTAssertEqual(format(["-bogus", "--", "cmd", "-log-format", "json"]), .text, "the command's own")
        XCTAssertEqual(format(["cmd", "-log-format", "json"]), .text)
        XCTAssertEqual(format(["-log-format"]), .text)
    }

    func testTheFlagAndTheVariable() throws {
        func parse(_ arguments: [String], _ variables: [String: String] = [:]) throws(SupervisorOptions.Failure) -> SupervisorOptions {
            guard case .run(let o) = try SupervisorOptions.parse(arguments, environment: { variables[$0] }) else { throw .usage("not run") }
            return o
        }
        XCTAssertEqual(try parse(["cmd"]).logFormat, .text)
        XCTAssertEqual(try parse(["-log-format", "json", "cmd"]).logFormat, .json)
        XCTAssertEqual(try parse(["cmd"], ["GRPC_INIT_LOG_FORMAT": "json"]).logFormat, .json)
        XCTAssertEqual(try parse(["-log-format=text", "cmd"], ["GRPC_INIT_LOG_FORMAT": "json"]).logFormat, .text)
        XCTAssertThrowsError(try parse(["-log-format", "yaml", "cmd"])) { error in
            XCTAssertEqual(error as? SupervisorOptions.Failure, .usage(#"invalid value "yaml" for -log-format: want text or json"#))
        }
        XCTAssertThrowsError(try parse(["cmd"], ["GRPC_INIT_LOG_FORMAT": "yaml"])) { error in
            XCTAssertEqual(error as? SupervisorOptions.Failure, .usage(#"invalid value "yaml" for GRPC_INIT_LOG_FORMAT: want text or json"#))
        }
    }
}
