import GateProtocol
import HealthServer
import XCTest

/// GET /metrics' text from a snapshot: both formats, every state, and service names that try to
/// break out of their label value.
final class MetricsTests: XCTestCase {
    static let hostile = ["db", "q\"uote", "back\\slash", "new\nline", "nul\u{0}cr\r\u{1b}[31mdel\u{7f}c1\u{9b}", String(decoding: [0x61, 0xFF, 0xC3, 0x62], as: UTF8.self),
                          "\\\"\n", "x\"} 1\ngrpc_init_ready 0\n# EOF"]
    static let build = BuildLabels(version: "0.1.0+abc", revision: "abc", swift: "6.3.1", openssl: "3.0.19")

    func snapshot(_ services: [String], serving: Bool = true, draining: Bool = false) -> MetricsSnapshot {
        let state: HealthState = serving ? .serving(server: "127.0.0.1:1") : .notServing(.status(.notServing))
        var counters = HealthCounters()
        for service in services {
            counters.transition(service, from: .notServing(.starting), to: .notServing(.awaitingAnswer))
            counters.transition(service, from: .notServing(.awaitingAnswer), to: state)
        }
        counters.probe(.readyz, success: true)
        counters.probe(.local, success: false)
        counters.checks.observe(nanoseconds: 1_500_000)
        var facts = SupervisorFacts()
        facts.supervisorStarted = 1_700_000_000_000_000_000
        facts.childStarted = 1_700_000_000_010_000_000
        facts.childPid = 42
        facts.firstServingAfter = serving ? 250_000_000 : nil
        facts.restarted(.crashed)
        let health = HealthSnapshot(services: services, states: Dictionary(uniqueKeysWithValues: services.map { ($0, state) }),
                                    overall: state, draining: draining, server: "127.0.0.1:1", connected: true)
        return MetricsSnapshot(health: health, counters: counters, facts: facts, agentStarted: 1_700_000_000_020_000_000, build: MetricsTests.build)
    }

    func render(_ snapshot: MetricsSnapshot, _ format: MetricsFormat) throws -> String {
        let bytes = Metrics.render(snapshot, format)
        return try XCTUnwrap(String(validating: bytes, as: UTF8.self), "valid UTF-8")
    }

    /// The sample lines, name and labels (values unescaped) and value, as a scraper reads them.
    func samples(_ text: String) throws -> [(name: String, labels: [String: String], value: String)] {
        var out: [(String, [String: String], String)] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() where !line.hasPrefix("#") {
            var rest = Substring(line)
            let name = String(rest.prefix { $0.isLetter || $0 == "_" })
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let label = String(rest.prefix { $0 != "=" })
                    rest = rest.dropFirst(label.count)
                    XCTAssertTrue(rest.hasPrefix("=\""), line.debugDescription)
                    rest = rest.dropFirst(2)
                    var value = ""
                    while let c = rest.first, c != "\"" {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            let escaped = try XCTUnwrap(rest.first, line.debugDescription)
                            rest = rest.dropFirst()
                            switch escaped {
                            case "n": value += "\n"
                            case "\\": value += "\\"
                            case "\"": value += "\""
                            default: XCTFail("invalid escape in \(line.debugDescription)")
                            }
                        } else {
                            XCTAssertFalse(c.unicodeScalars.contains { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) }, line.debugDescription)
                            value.append(c)
                        }
                    }
                    rest = rest.dropFirst()
                    if rest.first == "," { rest = rest.dropFirst() }
                    labels[label] = value
                }
                rest = rest.dropFirst()
            }
            XCTAssertEqual(rest.first, " ", line.debugDescription)
            let value = String(rest.dropFirst())
            XCTAssertNotNil(Double(value == "+Inf" ? "inf" : value), line.debugDescription)
            out.append((name, labels, value))
        }
        return out
    }

    func value(_ samples: [(name: String, labels: [String: String], value: String)], _ name: String, _ labels: [String: String] = [:]) -> String? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    func testHostileServiceNamesStayInTheirLabelValues() throws {
        for format in [MetricsFormat.prometheus, .openMetrics] {
            let text = try render(snapshot(MetricsTests.hostile), format)
            XCTAssertTrue(text.hasSuffix("\n"))
            for line in text.split(separator: "\n") {
                XCTAssertTrue(line.hasPrefix("grpc_init_") || line.hasPrefix("# HELP grpc_init_") || line.hasPrefix("# TYPE grpc_init_")
                              || line.hasPrefix("# UNIT grpc_init_") || line == "# EOF", "\(format): \(line.debugDescription)")
            }
            XCTAssertFalse(text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || (0x7F..<0xA0).contains($0.value) },
                           "no raw control character but the line ends")
            let parsed = try samples(text)
            XCTAssertEqual(text.split(separator: "\n").filter { $0 == "# EOF" }.count, format == .openMetrics ? 1 : 0, "one EOF, the format's")
            XCTAssertEqual(value(parsed, "grpc_init_ready"), "1", "a name cannot set another sample")
            for name in MetricsTests.hostile {
                // Quotes, backslashes and newlines come back as they were; other control
                // characters as the one escaping writes them.
                let expected = name.contains("\u{0}") ? "nul\\x00cr\\r\\x1b[31mdel\\x7fc1\\u009b" : name
                XCTAssertEqual(value(parsed, "grpc_init_service_serving", ["service": expected]), "1", "\(format) \(name.debugDescription)")
                XCTAssertEqual(value(parsed, "grpc_init_service_transitions_total", ["service": expected, "status": "SERVING"]), "1")
            }
            XCTAssertTrue(MetricsTests.hostile[5].contains("\u{FFFD}"), "invalid UTF-8 arrives replaced")
        }
    }

    func testTheFormatsDifferWhereTheirRulesDo() throws {
        let prometheus = try render(snapshot(["db"]), .prometheus)
        let open = try render(snapshot(["db"]), .openMetrics)
        XCTAssertFalse(prometheus.contains("# EOF"))
        XCTAssertTrue(open.hasSuffix("grpc_init_build_info{version=\"0.1.0+abc\",revision=\"abc\",swift=\"6.3.1\",openssl=\"3.0.19\"} 1\n# EOF\n"))
        XCTAssertTrue(prometheus.contains("# TYPE grpc_init_probes_total counter\ngrpc_init_probes_total{kind=\"readyz\",result=\"success\"} 1\n"))
        XCTAssertTrue(open.contains("# TYPE grpc_init_probes counter\ngrpc_init_probes_total{kind=\"readyz\",result=\"success\"} 1\n"))
        XCTAssertTrue(prometheus.contains("# TYPE grpc_init_build_info gauge\n"))
        XCTAssertTrue(open.contains("# TYPE grpc_init_build info\n"))
        XCTAssertTrue(open.contains("# TYPE grpc_init_check_duration_seconds histogram\n# UNIT grpc_init_check_duration_seconds seconds\n"))
        XCTAssertFalse(prometheus.contains("# UNIT"))
        // HELP: a double quote is escaped in OpenMetrics only.
        XCTAssertTrue(prometheus.contains("(service=\"\": the server as a whole)"))
        XCTAssertTrue(open.contains("(service=\\\"\\\": the server as a whole)"))
        // The same samples either way.
        XCTAssertEqual(try samples(prometheus).map(\.name), try samples(open).map(\.name))
        for text in [prometheus, open] {
            let parsed = try samples(text)
            XCTAssertEqual(value(parsed, "grpc_init_check_duration_seconds_bucket", ["le": "0.001"]), "0")
            XCTAssertEqual(value(parsed, "grpc_init_check_duration_seconds_bucket", ["le": "0.0025"]), "1")
            XCTAssertEqual(value(parsed, "grpc_init_check_duration_seconds_bucket", ["le": "10.0"]), "1")
            XCTAssertEqual(value(parsed, "grpc_init_check_duration_seconds_bucket", ["le": "+Inf"]), "1")
            XCTAssertEqual(value(parsed, "grpc_init_check_duration_seconds_sum"), "0.0015")
            XCTAssertEqual(value(parsed, "grpc_init_start_time_seconds"), "1700000000.0")
            XCTAssertEqual(value(parsed, "grpc_init_child_start_time_seconds"), "1700000000.01")
            XCTAssertEqual(value(parsed, "grpc_init_child_pid"), "42")
            XCTAssertEqual(value(parsed, "grpc_init_first_serving_seconds"), "0.25")
            XCTAssertEqual(value(parsed, "grpc_init_agent_restarts_total", ["cause": "crashed"]), "1")
            XCTAssertEqual(value(parsed, "grpc_init_agent_restarts_total", ["cause": "protocol_error"]), "0")
            XCTAssertEqual(value(parsed, "grpc_init_probes_total", ["kind": "local", "result": "failure"]), "1")
        }
    }

    func testEachStateIsSaid() throws {
        let notServing = try samples(render(snapshot(["db"], serving: false), .prometheus))
        XCTAssertEqual(value(notServing, "grpc_init_ready"), "0")
        XCTAssertEqual(value(notServing, "grpc_init_service_serving", ["service": "db"]), "0")
        XCTAssertEqual(value(notServing, "grpc_init_service_status", ["service": "db", "status": "NOT_SERVING"]), "1")
        XCTAssertEqual(value(notServing, "grpc_init_service_status", ["service": "db", "status": "SERVING"]), "0")
        XCTAssertNil(value(notServing, "grpc_init_first_serving_seconds"), "no first SERVING yet: no sample")
        let draining = try samples(render(snapshot(["db"], draining: true), .prometheus))
        XCTAssertEqual(value(draining, "grpc_init_ready"), "0")
        XCTAssertEqual(value(draining, "grpc_init_draining"), "1")
        var none = snapshot([""])
        none.facts = nil
        let early = try samples(render(none, .openMetrics))
        XCTAssertNil(value(early, "grpc_init_child_pid"), "the supervisor's facts only once told")
        XCTAssertEqual(value(early, "grpc_init_service_serving", ["service": ""]), "1")
    }

    func testTransitionsCountStatusWordsNotReasons() {
        var counters = HealthCounters()
        counters.transition("db", from: nil, to: .notServing(.starting))
        counters.transition("db", from: .notServing(.starting), to: .notServing(.noListener))
        counters.transition("db", from: .notServing(.noListener), to: .serving(server: "a"))
        counters.transition("db", from: .serving(server: "a"), to: .serving(server: "b"))
        counters.transition("db", from: .serving(server: "b"), to: .notServing(.rpc(GRPCStatus(rawCode: 5, message: "x", fromServer: true))))
        XCTAssertEqual(counters.transitions["db"]?[ServiceStatusLabel.noAnswer.rawValue], 1)
        XCTAssertEqual(counters.transitions["db"]?[ServiceStatusLabel.serving.rawValue], 1)
        XCTAssertEqual(counters.transitions["db"]?[ServiceStatusLabel.error.rawValue], 1)
    }

    func testTheHistogramsBucketsIncludeTheirBound() {
        var histogram = CheckHistogram()
        histogram.observe(nanoseconds: 1_000_000)
        histogram.observe(nanoseconds: 1_000_001)
        histogram.observe(nanoseconds: -5)
        histogram.observe(nanoseconds: .max)
        histogram.observe(nanoseconds: .max)
        XCTAssertEqual(histogram.buckets.first, 2)
        XCTAssertEqual(histogram.buckets[1], 1)
        XCTAssertEqual(histogram.buckets.last, 2)
        XCTAssertEqual(histogram.count, 5)
        XCTAssertEqual(histogram.sum, .max, "saturated, not trapped")
    }

    func testTheScraperChoosesTheFormat() {
        let cases: [(String?, MetricsFormat)] = [
            (nil, .prometheus),
            ("text/plain", .prometheus),
            ("*/*", .prometheus),
            ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", .openMetrics),
            ("application/openmetrics-text", .openMetrics),
            ("Application/OpenMetrics-Text; version=1.0.0; charset=utf-8", .openMetrics),
            ("application/openmetrics-text;version=0.0.1", .prometheus),
            ("application/openmetrics-text;q=0", .prometheus),
            ("text/plain;version=0.0.4;q=0.5, application/openmetrics-text; version=1.0.0; q=0.9", .openMetrics),
        ]
        for (accept, expected) in cases { XCTAssertEqual(MetricsFormat.negotiate(accept: accept), expected, accept ?? "none") }
        XCTAssertEqual(MetricsFormat.prometheus.contentType, "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(MetricsFormat.openMetrics.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    }
}
