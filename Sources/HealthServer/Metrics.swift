import Flags
import GateProtocol

/// `GET /metrics` without I/O: counters kept where their events happen (`HealthCounters`), a
/// snapshot of them with the health model and the supervisor's facts (`MetricsSnapshot`), and
/// its text in the Prometheus exposition format 0.0.4 or OpenMetrics 1.0, as the scraper asks.
/// Every label value is one the agent was configured with (the services: at most
/// `GateFraming.maxList`) or a fixed word, so the series are bounded whoever asks.
public enum MetricsFormat: Equatable, Sendable {
    /// `text/plain; version=0.0.4`
    case prometheus
    /// `application/openmetrics-text; version=1.0.0`
    case openMetrics

    public var contentType: String {
        switch self {
        case .prometheus: return "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// OpenMetrics when the Accept header offers `application/openmetrics-text` (version 1.0.0,
    /// or none named) with a q above zero; else the Prometheus text format, which every
    /// scraper reads.
    public static func negotiate(accept: String?) -> MetricsFormat {
        guard let accept else { return .prometheus }
        for range in accept.split(separator: ",").prefix(32) {
            let parts = range.split(separator: ";").map { $0.trimmingASCIISpaces().lowercased() }
            guard parts.first == "application/openmetrics-text" else { continue }
            var acceptable = true
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingASCIISpaces() }
                guard pair.count == 2 else { continue }
                if pair[0] == "version" && pair[1] != "1.0.0" { acceptable = false }
                if pair[0] == "q", let q = Double(pair[1]), q <= 0 { acceptable = false }
            }
            if acceptable { return .openMetrics }
        }
        return .prometheus
    }
}

/// Where a probe was answered.
public enum ProbeKind: Int, CaseIterable, Sendable {
    case readyz, livez, grpc, local

    public var label: String {
        switch self {
        case .readyz: return "readyz"
        case .livez: return "livez"
        case .grpc: return "grpc"
        case .local: return "local"
        }
    }
}

/// A service's state in one word: its serving status, or why there is none.
public enum ServiceStatusLabel: Int, CaseIterable, Sendable {
    case serving, notServing, serviceUnknown, unknown
    /// The health call failed with a status the server sent, or its answer did not decode.
    case error
    /// Nothing from the server: not found yet, unreachable, no answer yet, a call the agent ended.
    case noAnswer

    public init(_ state: HealthState) {
        switch state {
        case .serving: self = .serving
        case .notServing(let reason): self.init(reason)
        }
    }

    init(_ reason: Reason) {
        switch reason {
        case .status(.serving): self = .serving
        case .status(.notServing): self = .notServing
        case .status(.serviceUnknown): self = .serviceUnknown
        case .status: self = .unknown
        case .rpc(let status): self = status.fromServer ? .error : .noAnswer
        case .watchEnded: self = .noAnswer
        case .undecodable: self = .error
        case .service(_, let why), .server(_, let why): self.init(why)
        case .starting, .noListener, .noProc, .noGRPCServer, .unreachable, .setup, .draining, .awaitingAnswer: self = .noAnswer
        }
    }

    public var label: String {
        switch self {
        case .serving: return "SERVING"
        case .notServing: return "NOT_SERVING"
        case .serviceUnknown: return "SERVICE_UNKNOWN"
        case .unknown: return "UNKNOWN"
        case .error: return "ERROR"
        case .noAnswer: return "NO_ANSWER"
        }
    }
}

/// The durations of the Checks the agent made, in fixed buckets.
public struct CheckHistogram: Equatable, Sendable {
    /// Upper bounds in nanoseconds: 1 ms to 10 s, the range of a Check's deadline.
    public static let bounds: [Int64] = [1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000,
                                         250_000_000, 500_000_000, 1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000]
    /// Observations per bucket (not cumulative); the last is above every bound.
    public private(set) var buckets = [UInt64](repeating: 0, count: CheckHistogram.bounds.count + 1)
    public private(set) var count: UInt64 = 0
    public private(set) var sum: Int64 = 0

    public init() {}

    public mutating func observe(nanoseconds: Int64) {
        let value = max(0, nanoseconds)
        let index = CheckHistogram.bounds.firstIndex { value <= $0 } ?? CheckHistogram.bounds.count
        buckets[index] = buckets[index] &+ 1
        count = count &+ 1
        let (total, overflow) = sum.addingReportingOverflow(value)
        sum = overflow ? Int64.max : total
    }
}

/// The agent's counters, each incremented where its event happens; a scrape reads them.
public struct HealthCounters: Equatable, Sendable {
    /// By `ProbeKind`, then success (0) or failure (1).
    public private(set) var probes = [UInt64](repeating: 0, count: ProbeKind.allCases.count * 2)
    public var checks = CheckHistogram()
    /// By service, then by `ServiceStatusLabel`: how often the service entered that status.
    public private(set) var transitions: [String: [UInt64]] = [:]

    public init() {}

    public mutating func probe(_ kind: ProbeKind, success: Bool) {
        let index = kind.rawValue * 2 + (success ? 0 : 1)
        probes[index] = probes[index] &+ 1
    }

    public func probes(_ kind: ProbeKind, success: Bool) -> UInt64 { probes[kind.rawValue * 2 + (success ? 0 : 1)] }

    /// A service's state changed: counted when its status word did.
    public mutating func transition(_ service: String, from old: HealthState?, to new: HealthState) {
        let label = ServiceStatusLabel(new)
        if let old, ServiceStatusLabel(old) == label { return }
        var counts = transitions[service] ?? [UInt64](repeating: 0, count: ServiceStatusLabel.allCases.count)
        counts[label.rawValue] = counts[label.rawValue] &+ 1
        transitions[service] = counts
    }
}

/// What a scrape renders: read from memory, nothing asked of anyone.
public struct MetricsSnapshot: Sendable {
    public var health: HealthSnapshot
    public var counters: HealthCounters
    /// The supervisor's facts; nil until they arrive (or from a supervisor that sends none).
    public var facts: SupervisorFacts?
    /// The agent's start, nanoseconds since the Unix epoch.
    public var agentStarted: Int64
    public var build: BuildLabels

    public init(health: HealthSnapshot, counters: HealthCounters, facts: SupervisorFacts?, agentStarted: Int64, build: BuildLabels) {
        self.health = health
        self.counters = counters
        self.facts = facts
        self.agentStarted = agentStarted
        self.build = build
    }
}

/// `grpc_init_build_info`'s labels.
public struct BuildLabels: Equatable, Sendable {
    public var version: String
    public var revision: String
    public var swift: String
    public var openssl: String

    public init(version: String, revision: String, swift: String, openssl: String) {
        self.version = version
        self.revision = revision
        self.swift = swift
        self.openssl = openssl
    }

    /// From `BuildInfo`: the revision is what follows `+` in the version; the Swift and OpenSSL
    /// versions are the linked components' (empty without TLS).
    public static func fromBuildInfo() -> BuildLabels {
        let version = BuildInfo.version
        let revision = version.split(separator: "+", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        let components = BuildInfo.linkedComponents()
        func component(_ prefix: String) -> String { components.first { $0.name.hasPrefix(prefix) }?.version ?? "" }
        return BuildLabels(version: version, revision: revision, swift: component("swift"), openssl: component("openssl"))
    }
}

public enum Metrics {
    public static func render(_ snapshot: MetricsSnapshot, _ format: MetricsFormat) -> [UInt8] {
        var out = Exposition(format: format)
        let health = snapshot.health
        let ready = !health.draining && health.overall.isServing
        out.family("grpc_init_ready", .gauge, "1 when every configured service reports SERVING and no drain was asked for, as /readyz answers from the health model.")
        out.sample("grpc_init_ready", [], ready ? 1 : 0)
        out.family("grpc_init_draining", .gauge, "1 once the supervisor asked for a drain (SIGTERM with -drain-delay).")
        out.sample("grpc_init_draining", [], health.draining ? 1 : 0)
        out.family("grpc_init_connected", .gauge, "1 while the agent holds a connection to the server.")
        out.sample("grpc_init_connected", [], health.connected ? 1 : 0)

        let states = health.services.map { (service: $0, label: ServiceStatusLabel(health.states[$0] ?? .notServing(.starting))) }
        out.family("grpc_init_service_serving", .gauge, "1 when the configured service reports SERVING (service=\"\": the server as a whole).")
        for (service, label) in states { out.sample("grpc_init_service_serving", [("service", service)], label == .serving ? 1 : 0) }
        out.family("grpc_init_service_status", .gauge, "1 for the configured service's current status, 0 for the others.")
        for (service, label) in states {
            for status in ServiceStatusLabel.allCases {
                out.sample("grpc_init_service_status", [("service", service), ("status", status.label)], status == label ? 1 : 0)
            }
        }
        if !health.servers.isEmpty {
            out.family("grpc_init_server_serving", .gauge, "With several gRPC servers found: 1 when the server reports SERVING for the configured service.")
            for server in health.servers {
                for service in health.services {
                    out.sample("grpc_init_server_serving", [("server", server.name), ("service", service)], server.states[service]?.isServing == true ? 1 : 0)
                }
            }
        }
        out.family("grpc_init_service_transitions", .counter, "Times the configured service entered each status since the agent started.")
        for service in health.services {
            let counts = snapshot.counters.transitions[service] ?? []
            for status in ServiceStatusLabel.allCases {
                out.counter("grpc_init_service_transitions", [("service", service), ("status", status.label)],
                            status.rawValue < counts.count ? counts[status.rawValue] : 0)
            }
        }

        out.family("grpc_init_probes", .counter, "Probes answered by the health endpoint and the local probe socket, by kind and result.")
        for kind in ProbeKind.allCases {
            for success in [true, false] {
                out.counter("grpc_init_probes", [("kind", kind.label), ("result", success ? "success" : "failure")],
                            snapshot.counters.probes(kind, success: success))
            }
        }

        let checks = snapshot.counters.checks
        out.family("grpc_init_check_duration_seconds", .histogram, "Duration of the health Checks the agent made of the server (for probes, and without Watch).", unit: "seconds")
        var cumulative: UInt64 = 0
        for (index, bound) in CheckHistogram.bounds.enumerated() {
            cumulative = cumulative &+ checks.buckets[index]
            out.sample("grpc_init_check_duration_seconds_bucket", [("le", Exposition.bound(bound))], cumulative)
        }
        out.sample("grpc_init_check_duration_seconds_bucket", [("le", "+Inf")], checks.count)
        out.sample("grpc_init_check_duration_seconds_sum", [], Exposition.seconds(checks.sum))
        out.sample("grpc_init_check_duration_seconds_count", [], checks.count)

        out.family("grpc_init_agent_start_time_seconds", .gauge, "Start of the health agent's process, seconds since the Unix epoch.", unit: "seconds")
        out.sample("grpc_init_agent_start_time_seconds", [], Exposition.seconds(snapshot.agentStarted))
        if let facts = snapshot.facts {
            out.family("grpc_init_start_time_seconds", .gauge, "Start of grpc-init (the supervisor), seconds since the Unix epoch.", unit: "seconds")
            out.sample("grpc_init_start_time_seconds", [], Exposition.seconds(facts.supervisorStarted))
            out.family("grpc_init_child_start_time_seconds", .gauge, "Start of the child (the server), seconds since the Unix epoch.", unit: "seconds")
            out.sample("grpc_init_child_start_time_seconds", [], Exposition.seconds(facts.childStarted))
            out.family("grpc_init_child_pid", .gauge, "The child's process id.")
            out.sample("grpc_init_child_pid", [], UInt64(max(0, facts.childPid)))
            if let after = facts.firstServingAfter {
                out.family("grpc_init_first_serving_seconds", .gauge, "Seconds from grpc-init's start to the child's first SERVING.", unit: "seconds")
                out.sample("grpc_init_first_serving_seconds", [], Exposition.seconds(after))
            }
            out.family("grpc_init_agent_restarts", .counter, "Times the supervisor started the health agent again, by cause.")
            for cause in AgentRestartCause.allCases {
                out.counter("grpc_init_agent_restarts", [("cause", cause.label)], facts.restarts(cause))
            }
        }

        let build = snapshot.build
        out.family("grpc_init_build", .info, "grpc-init's version, the commit it was built from, and the Swift and OpenSSL it links.")
        out.sample("grpc_init_build_info", [("version", build.version), ("revision", build.revision), ("swift", build.swift), ("openssl", build.openssl)], 1)
        return out.finish()
    }
}

/// The text of one exposition, family by family.
struct Exposition {
    enum Kind { case gauge, counter, histogram, info }

    let format: MetricsFormat
    var text = ""

    init(format: MetricsFormat) {
        self.format = format
        text.reserveCapacity(8 << 10)
    }

    /// HELP and TYPE (and UNIT in OpenMetrics). OpenMetrics names a counter's family without
    /// `_total` and an info's without `_info`; the Prometheus text format has no info type: a
    /// gauge named with `_info`.
    mutating func family(_ name: String, _ kind: Kind, _ help: String, unit: String? = nil) {
        let family: String
        let type: String
        switch (kind, format) {
        case (.counter, .prometheus): (family, type) = (name + "_total", "counter")
        case (.counter, .openMetrics): (family, type) = (name, "counter")
        case (.info, .prometheus): (family, type) = (name + "_info", "gauge")
        case (.info, .openMetrics): (family, type) = (name, "info")
        case (.gauge, _): (family, type) = (name, "gauge")
        case (.histogram, _): (family, type) = (name, "histogram")
        }
        text += "# HELP \(family) \(Exposition.escaped(help, quotes: format == .openMetrics))\n# TYPE \(family) \(type)\n"
        if let unit, format == .openMetrics { text += "# UNIT \(family) \(unit)\n" }
    }

    mutating func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        sample(name + "_total", labels, value)
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        sample(name, labels, text: String(value))
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
        sample(name, labels, text: value)
    }

    private mutating func sample(_ name: String, _ labels: [(String, String)], text value: String) {
        text += name
        if !labels.isEmpty {
            text += "{"
            for (index, (label, labelValue)) in labels.enumerated() {
                if index > 0 { text += "," }
                text += "\(label)=\"\(Exposition.escaped(labelValue, quotes: true))\""
            }
            text += "}"
        }
        text += " \(value)\n"
    }

    mutating func finish() -> [UInt8] {
        if format == .openMetrics { text += "# EOF\n" }
        return Array(text.utf8)
    }

    /// A label value (or a HELP text): backslash, double quote (not in the Prometheus format's
    /// HELP) and newline as the formats escape them; any other control character as the
    /// project's one escaping writes it (`\x1b`, its backslash escaped in turn), so that what
    /// a name holds cannot end a line, a value or the exposition. Swift strings are valid
    /// UTF-8: bytes that were not arrive as U+FFFD.
    static func escaped(_ text: String, quotes: Bool) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"" where quotes: out += "\\\""
            case "\n": out += "\\n"
            case _ where scalar.value < 0x20 || (0x7F..<0xA0).contains(scalar.value):
                out += escapingControlCharacters(String(scalar)).replacingBackslashes
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Nanoseconds as seconds, exactly, always with a decimal point (a float, as OpenMetrics
    /// writes its bounds: `1.0`, `0.005`).
    static func seconds(_ nanoseconds: Int64) -> String {
        let text = GoDuration.decimalSeconds(nanoseconds)
        return text.contains(".") ? text : text + ".0"
    }

    /// A bucket's bound, as OpenMetrics wants it (a float: `1.0`, `0.005`).
    static func bound(_ nanoseconds: Int64) -> String { seconds(nanoseconds) }
}

private extension String {
    var replacingBackslashes: String {
        var out = ""
        for scalar in unicodeScalars { if scalar == "\\" { out += "\\\\" } else { out.unicodeScalars.append(scalar) } }
        return out
    }
}
