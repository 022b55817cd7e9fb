import Flags
import Glibc

/// The readiness gate's configuration, one value for both sides: the supervisor fills it from
/// its flags and keeps what is its own to act on (the ready file, the timeouts that stop the
/// child); the agent is given it whole, as `fields` encodes it.
public struct GateConfiguration: Equatable, Sendable {
    /// The server's address (-ready-addr); empty: find it.
    public var addr = ""
    /// The services that must all be SERVING (-ready-service); [""]: the server as a whole.
    public var services = [""]
    /// The Check interval for a server without Watch (-ready-interval).
    public var interval = GoDuration(nanoseconds: 250_000_000)
    public var connectTimeout = GoDuration.second
    public var rpcTimeout = GoDuration.second
    /// -ready-tls and its companions.
    public var tls = TLSFlags()
    public var spiffe = false
    /// -ready-rpc-header values, "name: value".
    public var rpcHeaders: [String] = []
    /// -health-addr: where kubelet's native probes are answered (empty: nowhere). The supervisor
    /// binds it; the agent serves its listening socket as descriptor 3.
    public var healthAddr = ""
    /// An HTTP probe's answer deadline (-health-timeout): HTTP carries none.
    public var healthTimeout = GoDuration.second
    /// -ready-file: this file exists while the server is SERVING.
    public var file = ""
    /// -ready-timeout: not ready this long after start stops the child (zero: wait for ever).
    public var startupTimeout = GoDuration(nanoseconds: 0)
    /// -exit-unhealthy-after: after the first SERVING, not SERVING this long stops the child.
    public var exitUnhealthyAfter: GoDuration?
    /// -exit-unresponsive-after: after the first SERVING, no answer this long stops the child.
    public var exitUnresponsiveAfter: GoDuration?
    /// The local probe socket (for `grpc_health_probe` with no -addr) is descriptor 4.
    public var servesLocalProbes = false
    /// With -exit-unresponsive-after or WATCHDOG_USEC: a Check this often proves the server
    /// answers (each answer reported); zero: no Checks beyond the Watch.
    public var answerInterval = GoDuration(nanoseconds: 0)

    public init() {}

    /// The health endpoint's listening socket is descriptor 3.
    public var servesHealth: Bool { !healthAddr.isEmpty }

    /// Every field once: its tag on the wire (never reused), the name users know it by, its
    /// value, and what a value must be. Encoding, decoding and the supervisor's checks of what
    /// the protocol carries all walk this table.
    public mutating func fields(_ v: inout some GateFieldVisitor) throws(GateFraming.Failure) {
        try v.field(1, "ready-addr", &addr)
        try v.field(2, "ready-service", &services, .nonEmpty)
        try v.field(3, "ready-interval", &interval, .positive)
        try v.field(4, "ready-connect-timeout", &connectTimeout, .positive)
        try v.field(5, "ready-rpc-timeout", &rpcTimeout, .positive)
        try v.field(6, "ready-tls", &tls.tls)
        try v.field(7, "ready-tls-no-verify", &tls.noVerify)
        try v.field(8, "ready-tls-ca-cert", &tls.caCert)
        try v.field(9, "ready-tls-client-cert", &tls.clientCert)
        try v.field(10, "ready-tls-client-key", &tls.clientKey)
        try v.field(11, "ready-tls-server-name", &tls.serverName)
        try v.field(12, "ready-spiffe", &spiffe)
        try v.field(13, "ready-rpc-header", &rpcHeaders, .any)
        try v.field(14, "health-addr", &healthAddr)
        try v.field(15, "health-timeout", &healthTimeout, .positive)
        try v.field(16, "ready-file", &file)
        try v.field(17, "ready-timeout", &startupTimeout, .nonNegative)
        try v.field(18, "exit-unhealthy-after", &exitUnhealthyAfter, .positive)
        try v.field(19, "exit-unresponsive-after", &exitUnresponsiveAfter, .positive)
        try v.field(20, "local probe socket", &servesLocalProbes)
        try v.field(21, "answer interval", &answerInterval, .nonNegative)
    }
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
/// its name and its value, to read or to set.
public protocol GateFieldVisitor {
    mutating func field(_ tag: UInt8, _ name: String, _ value: inout String) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ value: inout Bool) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ value: inout [String], _ rule: GateList) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ value: inout GoDuration, _ rule: GateSpan) throws(GateFraming.Failure)
    mutating func field(_ tag: UInt8, _ name: String, _ value: inout GoDuration?, _ rule: GateSpan) throws(GateFraming.Failure)
}

/// The configuration on the wire: a count of fields, then each field that differs from its
/// default as its tag and its value (a string: 16-bit length and UTF-8; a list: a count and
/// strings; a flag: a byte; a duration: 8 bytes; an optional duration: a byte, then 8 bytes when
/// present). A tag this version does not know, a field given twice, one cut short or out of its
/// range is refused, and so is a payload with fewer fields than its count says.
extension GateConfiguration {
    func encode(into w: inout GateFraming.Writer) {
        var defaults = GateFieldWriter(skipping: nil)
        var initial = GateConfiguration()
        try? initial.fields(&defaults)
        var writer = GateFieldWriter(skipping: defaults.written)
        var copy = self
        try? copy.fields(&writer)
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
            var reader = GateFieldReader(r, tag: tag)
            try c.fields(&reader)
            guard reader.matched else { throw .unknownField(kind: r.kind, tag: tag) }
            r = reader.r
        }
        try r.end()
        return c
    }
}

/// Writes each field as tag and value, leaving out those whose value's bytes are `skipping`'s
/// (the defaults); records what it wrote by tag.
struct GateFieldWriter: GateFieldVisitor {
    let skipping: [UInt8: [UInt8]]?
    var out = GateFraming.Writer()
    /// How many fields `out` holds.
    var count: UInt8 = 0
    var written: [UInt8: [UInt8]] = [:]

    init(skipping: [UInt8: [UInt8]]?) { self.skipping = skipping }

    private mutating func put(_ tag: UInt8, _ value: GateFraming.Writer) {
        if skipping?[tag] == value.bytes { return }
        if skipping == nil { written[tag] = value.bytes }
        out.byte(tag)
        out.bytes += value.bytes
        count &+= 1
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout String) {
        var w = GateFraming.Writer()
        w.string(value)
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout Bool) {
        var w = GateFraming.Writer()
        w.flag(value)
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout [String], _ rule: GateList) {
        var w = GateFraming.Writer()
        let entries = value.prefix(GateFraming.maxList)
        w.byte(UInt8(entries.count))
        for entry in entries { w.string(entry) }
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout GoDuration, _ rule: GateSpan) {
        var w = GateFraming.Writer()
        w.integer(value.nanoseconds)
        put(tag, w)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout GoDuration?, _ rule: GateSpan) {
        var w = GateFraming.Writer()
        w.flag(value != nil)
        if let value { w.integer(value.nanoseconds) }
        put(tag, w)
    }
}

/// Reads the value of the field whose tag came, refusing one out of its range.
struct GateFieldReader: GateFieldVisitor {
    var r: GateFraming.Reader
    let tag: UInt8
    private(set) var matched = false

    init(_ r: GateFraming.Reader, tag: UInt8) {
        self.r = r
        self.tag = tag
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout String) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        value = try r.string()
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout Bool) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        value = try r.flag()
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout [String], _ rule: GateList) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        var entries: [String] = []
        for _ in 0..<(try r.count()) { entries.append(try r.string()) }
        if rule == .nonEmpty && entries.isEmpty { throw .malformed(kind: r.kind) }
        value = entries
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout GoDuration, _ rule: GateSpan) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        let span = GoDuration(nanoseconds: try r.integer())
        guard rule.admits(span) else { throw .malformed(kind: r.kind) }
        value = span
    }

    mutating func field(_ tag: UInt8, _ name: String, _ value: inout GoDuration?, _ rule: GateSpan) throws(GateFraming.Failure) {
        guard tag == self.tag else { return }
        matched = true
        guard try r.flag() else {
            value = nil
            return
        }
        let span = GoDuration(nanoseconds: try r.integer())
        guard rule.admits(span) else { throw .malformed(kind: r.kind) }
        value = span
    }
}
