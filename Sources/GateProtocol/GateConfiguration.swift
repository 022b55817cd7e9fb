import Flags
import Glibc

/// The readiness gate's configuration, one value for both sides: the supervisor fills it from
/// its flags and keeps what is its own to act on (the ready file, the timeouts that stop the
/// child); the agent is given it whole, as `fields` encodes it. What each field means, and the
/// flag that sets it, is said once, in `fields`.
public struct GateConfiguration: Equatable, Sendable {
    /// Empty: find it.
    public var addr = ""
    /// Every one must be SERVING; [""]: the server as a whole.
    public var services = [""]
    public var interval = GoDuration(nanoseconds: 250_000_000)
    public var connectTimeout = GoDuration.second
    public var rpcTimeout = GoDuration.second
    public var tls = TLSFlags()
    public var spiffe = false
    /// "name: value" each.
    public var rpcHeaders: [String] = []
    /// Empty: nowhere. The supervisor binds it; the agent serves its listening socket as
    /// descriptor 3.
    public var healthAddr = ""
    public var healthTimeout = GoDuration.second
    public var file = ""
    /// Zero: wait for ever.
    public var startupTimeout = GoDuration(nanoseconds: 0)
    /// Nil: the action is off.
    public var exitUnhealthyAfter: GoDuration?
    public var exitUnresponsiveAfter: GoDuration?
    /// The local probe socket (for `grpc_health_probe` with no -addr) is descriptor 4.
    public var servesLocalProbes = false
    /// With -exit-unresponsive-after or WATCHDOG_USEC: a Check this often proves the server
    /// answers (each answer reported); zero: no Checks beyond the Watch.
    public var answerInterval = GoDuration(nanoseconds: 0)

    public init() {}

    /// The health endpoint's listening socket is descriptor 3.
    public var servesHealth: Bool { !healthAddr.isEmpty }

    /// Every field once (the flags in the order a refusal of several names the first): its tag
    /// on the wire (never reused), the name users know it by, where
    /// it is held, what a value must be, and the flag that sets it (named as the field, its
    /// default the field's; nil: the supervisor sets it). Encoding, decoding, the flags the
    /// supervisor takes, their reading and the checks of their values all walk this table.
    public static func fields(_ v: inout some GateFieldVisitor) throws(GateFraming.Failure) {
        try v.field(1, "ready-addr", \.addr, GateFlag(placeholder: "ADDR",
            usage: "the child's health service is at ADDR (-addr of grpc_health_probe); default: found from the sockets the child listens on"))
        try v.field(2, "ready-service", \.services, .nonEmpty, GateFlag(placeholder: "NAME", splitting: .commasKeepingEmpty,
            usage: "a service name the gate watches; repeatable (in GRPC_INIT_READY_SERVICE, separated by commas): ready when every one is SERVING ('*': every service the server lists with Health/List; default: the server as a whole)",
            validate: { $0.isEmpty ? "a service name must not be empty" : nil }))
        try v.field(3, "ready-interval", \.interval, .positive, GateFlag(usage: "pause between Checks, for a server without Health/Watch"))
        try v.field(16, "ready-file", \.file, GateFlag(placeholder: "PATH", usage: "this file exists while the child reports SERVING"))
        try v.field(17, "ready-timeout", \.startupTimeout, .nonNegative, GateFlag(
            usage: "not ready this long after start: stop the child as the stop signal would, and exit with status 124 (0: wait for ever)"))
        try v.field(6, "ready-tls", \.tls.tls, GateFlag(usage: "reach the child over TLS (a discovered TLS-only port needs no flag)"))
        try v.field(7, "ready-tls-no-verify", \.tls.noVerify, GateFlag(usage: "(with -ready-tls) don't verify the child's certificate"))
        try v.field(8, "ready-tls-ca-cert", \.tls.caCert, GateFlag(placeholder: "FILE", usage: "(with -ready-tls) trusted certificates for verifying the child"))
        try v.field(9, "ready-tls-client-cert", \.tls.clientCert,
                    GateFlag(placeholder: "FILE", usage: "(with -ready-tls) client certificate (requires -ready-tls-client-key)"))
        try v.field(10, "ready-tls-client-key", \.tls.clientKey,
                    GateFlag(placeholder: "FILE", usage: "(with -ready-tls) client private key (requires -ready-tls-client-cert)"))
        try v.field(11, "ready-tls-server-name", \.tls.serverName,
                    GateFlag(placeholder: "NAME", usage: "(with -ready-tls) the host name to verify the child's certificate for"))
        try v.field(12, "ready-spiffe", \.spiffe,
                    GateFlag(usage: "reach the child with SPIFFE mTLS (credentials from the Workload API at SPIFFE_ENDPOINT_SOCKET)"))
        try v.field(13, "ready-rpc-header", \.rpcHeaders, .any, GateFlag(placeholder: "'NAME: VALUE'", splitting: .commas,
            usage: "metadata sent with the gate's health calls (repeatable; in GRPC_INIT_READY_RPC_HEADER, separated by commas)",
            validate: { value in value.contains(":") ? nil : "invalid RPC header, expected 'key: value', got \(goQuote(value))" }))
        try v.field(4, "ready-connect-timeout", \.connectTimeout, .positive, GateFlag(usage: "timeout for each of the gate's connection attempts"))
        try v.field(5, "ready-rpc-timeout", \.rpcTimeout, .positive, GateFlag(usage: "timeout for each of the gate's health calls"))
        try v.field(14, "health-addr", \.healthAddr, GateFlag(placeholder: "ADDR",
            usage: "the health agent answers kubelet's native probes here (:8086, 127.0.0.1:8086, [::]:8086): HTTP GET /readyz (?verbose lists each service, and those the child lists) and /livez, and grpc.health.v1.Health over h2c (Check, Watch, List), from its health model and a fresh Check of the child; GET /metrics for Prometheus"))
        try v.field(15, "health-timeout", \.healthTimeout, .positive, GateFlag(
            usage: "how long an HTTP probe of -health-addr waits for the child's answer (HTTP carries no deadline; ?timeout= overrides it)"))
        try v.field(18, "exit-unhealthy-after", \.exitUnhealthyAfter, .positive, GateFlag(
            usage: "after the first SERVING, not SERVING (any other status, or no answer: the agent Checks every quarter of it) this long: stop the child as the stop signal would and exit with status 125 (not once a stop has begun)"))
        try v.field(19, "exit-unresponsive-after", \.exitUnresponsiveAfter, .positive, GateFlag(
            usage: "after the first SERVING, no answer at all from the child's health service this long (hung or gone): stop the child as the stop signal would and exit with status 125; the agent Checks every quarter of it"))
        try v.field(20, "local probe socket", \.servesLocalProbes, nil)
        try v.field(21, "answer interval", \.answerInterval, .nonNegative, nil)
    }

    /// The name `field` goes by in `fields` (its flag's, for a field a flag sets; empty for a
    /// path the table does not hold).
    public static func name(of field: PartialKeyPath<GateConfiguration>) -> String {
        var finder = NameFinder(target: field)
        try? fields(&finder)
        return finder.name
    }

    /// What to give for a server that wants a client certificate, in the gate's flags.
    public static var clientCertificateAdvice: String {
        "give -\(name(of: \.tls.clientCert)) and -\(name(of: \.tls.clientKey)), or -\(name(of: \.spiffe))"
    }
}

/// How a field is set from the command line: the words of its usage, the word after its name
/// there, and for a list, what one value must be and how one environment variable holds
/// several. The flag's name and default are its field's. A list flag starts empty: given no
/// value, its field keeps its default. An optional field is set only when its flag is given.
public struct GateFlag<Value: FlagValue>: Sendable {
    public let usage: String
    public let placeholder: String?
    public let splitting: FlagSet.Splitting
    public let validate: (@Sendable (String) -> String?)?
}

extension GateFlag where Value == String {
    public init(placeholder: String? = nil, usage: String) {
        (self.usage, self.placeholder, splitting, validate) = (usage, placeholder, .commasOrSpaces, nil)
    }

    /// The flag's key, named `name`, its default `value`.
    public func key(_ name: String, default value: String) -> Flag<String> { Flag(name, default: value, placeholder: placeholder, usage: usage) }
}

extension GateFlag where Value == Bool {
    public init(usage: String) { (self.usage, placeholder, splitting, validate) = (usage, nil, .commasOrSpaces, nil) }

    public func key(_ name: String, default value: Bool) -> Flag<Bool> { Flag(name, default: value, usage: usage) }
}

extension GateFlag where Value == GoDuration {
    public init(placeholder: String? = nil, usage: String) {
        (self.usage, self.placeholder, splitting, validate) = (usage, placeholder, .commasOrSpaces, nil)
    }

    public func key(_ name: String, default value: GoDuration) -> Flag<GoDuration> { Flag(name, default: value, placeholder: placeholder, usage: usage) }
}

extension GateFlag where Value == [String] {
    public init(placeholder: String? = nil, splitting: FlagSet.Splitting = .commasOrSpaces, usage: String,
                validate: @escaping @Sendable (String) -> String?) {
        (self.usage, self.placeholder, self.splitting, self.validate) = (usage, placeholder, splitting, validate)
    }

    /// The flag's key (empty until given, whatever its field's default).
    public func key(_ name: String) -> Flag<[String]> {
        Flag(name, placeholder: placeholder, splitting: splitting, usage: usage, validate: validate ?? { _ in nil })
    }
}

/// Finds the name of the field at one key path.
private struct NameFinder: GateFieldVisitor {
    let target: AnyKeyPath
    var name = ""

    init(target: AnyKeyPath) { self.target = target }

    private mutating func visit(_ name: String, _ path: AnyKeyPath) { if path == target { self.name = name } }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) { visit(name, path) }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) { visit(name, path) }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) { visit(name, path) }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) { visit(name, path) }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) { visit(name, path) }
}

/// The drain, one value for both sides: the stop signal (SIGTERM unless -stop-signal says
/// otherwise) takes the server out of rotation at once (the ready file removed, STATUS=draining,
/// every probe the agent answers told "draining") and reaches the child `delay` later. The
/// supervisor times it; the agent is told when it begins.
public struct Drain: Hashable, Sendable {
    /// -drain-delay; zero: the stop signal passes on at once and nothing drains.
    public var delay = GoDuration(nanoseconds: 0)
    /// -stop-signal: the signal that begins the stop, and the drain with it.
    public var signal: Int32 = SIGTERM

    public init(delay: GoDuration = GoDuration(nanoseconds: 0), signal: Int32 = SIGTERM) {
        self.delay = delay
        self.signal = signal
    }

    /// Whether a stop by `signal` drains: the stop signal, with a delay (SIGINT, and SIGTERM
    /// when it is not the stop signal, pass on at once).
    public func drains(_ signal: Int32) -> Bool { signal == self.signal && delay.nanoseconds > 0 }

    /// When the held SIGTERM goes on, for a drain begun at `now` (saturated: Go's largest delay
    /// is "never").
    public func ends(from now: Int64) -> Int64 {
        let (sum, overflow) = now.addingReportingOverflow(delay.nanoseconds)
        return overflow ? (delay.nanoseconds > 0 ? .max : .min) : sum
    }

    /// What the drain is called wherever it is said: STATUS=, the endpoint's answers, the log.
    public static let word = "draining"
}

/// What a duration field may hold.
public enum GateSpan: Sendable {
    case positive, nonNegative

    public func admits(_ span: GoDuration) -> Bool {
        switch self {
        case .positive: return span.nanoseconds > 0
        case .nonNegative: return span.nanoseconds >= 0
        }
    }
}

/// What a list field may hold.
public enum GateList: Sendable {
    case any, nonEmpty
}

/// One walk over a configuration's fields (`GateConfiguration.fields`), each given with its tag,
/// its name, where a configuration holds it, and its flag.
public protocol GateFieldVisitor {
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>,
                        _ flag: GateFlag<String>?) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>,
                        _ flag: GateFlag<Bool>?) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) throws(GateFraming.Failure)
}

/// The configuration on the wire: a count of fields, then each field that differs from its
/// default as its tag and its value (a string: 16-bit length and UTF-8; a list: a count and
/// strings; a flag: a byte; a duration: 8 bytes; an optional duration: a byte, then 8 bytes when
/// present). A tag this version does not know, a field given twice, one cut short or out of its
/// range is refused, and so is a payload with fewer fields than its count says.
extension GateConfiguration {
    func encode(into w: inout GateFraming.Writer) {
        var defaults = GateFieldWriter(GateConfiguration(), skipping: nil)
        try? GateConfiguration.fields(&defaults)
        var writer = GateFieldWriter(self, skipping: defaults.written)
        try? GateConfiguration.fields(&writer)
        w.byte(writer.count)
        w.bytes += writer.out.bytes
    }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> GateConfiguration {
        var c = GateConfiguration()
        var seen: UInt64 = 0
        for _ in 0..<(try r.byte()) {
            let tag = try r.byte()
            guard tag < 64 else { throw .unknownField(kind: r.kind, tag: tag) }
            if seen & (1 << UInt64(tag)) != 0 { throw .malformed(kind: r.kind) }
            seen |= 1 << UInt64(tag)
            var reader = GateFieldReader(r, into: c, tag: tag)
            try fields(&reader)
            guard reader.matched else { throw .unknownField(kind: r.kind, tag: tag) }
            r = reader.r
            c = reader.configuration
        }
        try r.end()
        return c
    }
}

/// Writes each field of `configuration` as tag and value, leaving out those whose value's bytes
/// are `skipping`'s (the defaults); records what it wrote by tag.
struct GateFieldWriter: GateFieldVisitor {
    let configuration: GateConfiguration
    let skipping: [UInt8: [UInt8]]?
    var out = GateFraming.Writer()
    /// How many fields `out` holds.
    var count: UInt8 = 0
    var written: [UInt8: [UInt8]] = [:]

    init(_ configuration: GateConfiguration, skipping: [UInt8: [UInt8]]?) {
        self.configuration = configuration
        self.skipping = skipping
    }

    private mutating func put(_ tag: UInt8, _ value: GateFraming.Writer) {
        if skipping?[tag] == value.bytes { return }
        if skipping == nil { written[tag] = value.bytes }
        out.byte(tag)
        out.bytes += value.bytes
        count &+= 1
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
        var w = GateFraming.Writer()
        w.string(configuration[keyPath: path])
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {
        var w = GateFraming.Writer()
        w.flag(configuration[keyPath: path])
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) {
        var w = GateFraming.Writer()
        let entries = configuration[keyPath: path].prefix(GateFraming.maxList)
        w.byte(UInt8(entries.count))
        for entry in entries { w.string(entry) }
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        var w = GateFraming.Writer()
        w.integer(configuration[keyPath: path].nanoseconds)
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        var w = GateFraming.Writer()
        let value = configuration[keyPath: path]
        w.flag(value != nil)
        if let value { w.integer(value.nanoseconds) }
        put(tag, w)
    }
}

/// Reads the value of the field whose tag came into `configuration`, refusing one out of its
/// range.
struct GateFieldReader: GateFieldVisitor {
    var r: GateFraming.Reader
    var configuration: GateConfiguration
    let tag: UInt8
    private(set) var matched = false

    init(_ r: GateFraming.Reader, into configuration: GateConfiguration, tag: UInt8) {
        self.r = r
        self.configuration = configuration
        self.tag = tag
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>,
                        _ flag: GateFlag<String>?) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        configuration[keyPath: path] = try r.string()
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>,
                        _ flag: GateFlag<Bool>?) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        configuration[keyPath: path] = try r.flag()
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        var entries: [String] = []
        for _ in 0..<(try r.count()) { entries.append(try r.string()) }
        if rule == .nonEmpty && entries.isEmpty { throw .malformed(kind: r.kind) }
        configuration[keyPath: path] = entries
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        let span = GoDuration(nanoseconds: try r.integer())
        guard rule.admits(span) else { throw .malformed(kind: r.kind) }
        configuration[keyPath: path] = span
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        guard try r.flag() else {
            configuration[keyPath: path] = nil
            return
        }
        let span = GoDuration(nanoseconds: try r.integer())
        guard rule.admits(span) else { throw .malformed(kind: r.kind) }
        configuration[keyPath: path] = span
    }
}
