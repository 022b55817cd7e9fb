import Flags

/// `grpc_health_probe` with no -addr, inside a grpc-init container, asks the agent over the
/// local probe socket: one query, one answer, each one frame of the gate protocol.
public struct LocalQuery: Equatable, Sendable {
    /// The service asked about; nil: every configured service.
    public var service: String?
    /// -v: the answer lists each configured service.
    public var verbose = false
    /// The deadline of a Check the answer needs (-rpc-timeout).
    public var timeout = GoDuration.second

    public init(service: String?, verbose: Bool, timeout: GoDuration) {
        self.service = service
        self.verbose = verbose
        self.timeout = timeout
    }

    static let kind: UInt8 = 32

    public var frame: [UInt8] {
        var w = GateFraming.Writer()
        w.flag(service != nil)
        w.string(service ?? "")
        w.flag(verbose)
        w.integer(timeout.nanoseconds)
        return GateFraming.frame(kind: LocalQuery.kind, w)
    }

    public static func decode(kind: UInt8, payload: [UInt8]) throws(GateFraming.Failure) -> LocalQuery {
        guard kind == LocalQuery.kind else { throw .malformed(kind: kind) }
        var r = GateFraming.Reader(payload, kind: kind)
        let named = try r.flag()
        let service = try r.string()
        let verbose = try r.flag()
        let timeout = try r.integer()
        try r.end()
        guard timeout > 0 else { throw .malformed(kind: kind) }
        return LocalQuery(service: named ? service : nil, verbose: verbose, timeout: GoDuration(nanoseconds: timeout))
    }
}

public struct LocalAnswer: Equatable, Sendable {
    public var verdict: Verdict
    /// The server, as an -addr would name it; empty while none is found.
    public var server: String
    /// Each configured service and its verdict (with -v); then the services the server lists
    /// beyond those, or why its List could not be taken.
    public var services: [ServiceLine]
    /// Lines of `services` the frame had no room for (a frame's lists hold `GateFraming.maxList`
    /// entries, in `maxPayload` bytes); set by decoding.
    public var notShown: Int

    public init(verdict: Verdict, server: String, services: [ServiceLine], notShown: Int = 0) {
        self.verdict = verdict
        self.server = server
        self.services = services
        self.notShown = notShown
    }

    static let kind: UInt8 = 33
    /// The bytes the listed lines' count and the count of lines not shown take after the
    /// required lines.
    private static let tail = 1 + 8

    /// The answer's lines as the probe prints them: each service line, then how many the frame
    /// left out.
    public var lines: [String] {
        services.map(\.description) + (notShown > 0 ? [ServiceLine.notShown(notShown)] : [])
    }

    public var frame: [UInt8] {
        var w = GateFraming.Writer()
        verdict.encode(into: &w)
        w.string(server)
        let required = services.filter { $0.role == .required }
        let listed = services.filter { $0.role != .required }
        var shown = w.list(required, reserving: LocalAnswer.tail) { line, entry in
            entry.string(line.service)
            line.verdict.encode(into: &entry)
        }
        // What follows the required lines is read only when present: an answer about the
        // configured services alone stays that list, and the listed lines and the count of those
        // left out are written only when there are any.
        let left = services.count - shown - listed.count
        guard !listed.isEmpty || left > 0 else { return GateFraming.frame(kind: LocalAnswer.kind, w) }
        shown += w.list(listed, reserving: 8) { line, entry in
            entry.byte(line.role.rawValue)
            entry.string(line.service)
            line.verdict.encode(into: &entry)
        }
        let notShown = services.count - shown
        if notShown > 0 { w.integer(Int64(notShown)) }
        return GateFraming.frame(kind: LocalAnswer.kind, w)
    }

    public static func decode(kind: UInt8, payload: [UInt8]) throws(GateFraming.Failure) -> LocalAnswer {
        guard kind == LocalAnswer.kind else { throw .malformed(kind: kind) }
        var r = GateFraming.Reader(payload, kind: kind)
        let verdict = try Verdict.decode(from: &r)
        let server = try r.string()
        var services: [ServiceLine] = []
        for _ in 0..<(try r.count()) {
            let service = try r.string()
            services.append(ServiceLine(service: service, verdict: try Verdict.decode(from: &r)))
        }
        if !r.atEnd {
            for _ in 0..<(try r.count()) {
                guard let role = ServiceLine.Role(rawValue: try r.byte()), role != .required else { throw .malformed(kind: kind) }
                let service = try r.string()
                services.append(ServiceLine(service: service, verdict: try Verdict.decode(from: &r), role: role))
            }
        }
        var notShown = 0
        if !r.atEnd {
            let count = try r.integer()
            guard count > 0 && count <= Int64(Int32.max) else { throw .malformed(kind: kind) }
            notShown = Int(count)
        }
        try r.end()
        return LocalAnswer(verdict: verdict, server: server, services: services, notShown: notShown)
    }
}

/// Where the agent listens for local probes: an abstract socket named for the PID namespace,
/// which a probe in the same container shares (containers of a pod share the network namespace,
/// where abstract names live, but not the PID namespace; the agent also refuses a peer outside
/// its PID namespace). Nil when the namespace cannot be read (no /proc).
public enum LocalProbeSocket {
    /// `namespace` is what /proc/self/ns/pid links to: "pid:[4026531836]".
    public static func name(namespace: String) -> String? {
        guard namespace.hasPrefix("pid:["), namespace.hasSuffix("]") else { return nil }
        let inode = namespace.dropFirst(5).dropLast()
        guard !inode.isEmpty, inode.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return "grpc-init/probe/\(inode)"
    }
}
