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
    public enum Outcome: Equatable, Sendable {
        case serving
        /// The server answered another status (its name), or the agent drains (NOT_SERVING).
        case notServing(String)
        /// The agent has no connection to the server, and why.
        case noConnection(Reason)
        /// The Check failed without an answer: its gRPC code and message.
        case rpcFailed(code: Int32, message: String)
    }

    public struct ServiceLine: Equatable, Sendable {
        public let service: String
        public let serving: Bool
        /// The status's name, or why there is none.
        public let status: String

        public init(service: String, serving: Bool, status: String) {
            self.service = service
            self.serving = serving
            self.status = status
        }
    }

    public var outcome: Outcome
    /// The server, as an -addr would name it; empty while none is found.
    public var server: String
    /// Each configured service and its status (with -v).
    public var services: [ServiceLine]

    public init(outcome: Outcome, server: String, services: [ServiceLine]) {
        self.outcome = outcome
        self.server = server
        self.services = services
    }

    static let kind: UInt8 = 33

    public var frame: [UInt8] {
        var w = GateFraming.Writer()
        switch outcome {
        case .serving: w.byte(0)
        case .notServing(let status):
            w.byte(1)
            w.string(status)
        case .noConnection(let reason):
            w.byte(2)
            reason.encode(into: &w)
        case .rpcFailed(let code, let message):
            w.byte(3)
            w.integer(Int64(code))
            w.string(message)
        }
        w.string(server)
        let lines = services.prefix(GateFraming.maxList)
        w.byte(UInt8(lines.count))
        for line in lines {
            w.string(line.service)
            w.flag(line.serving)
            w.string(line.status)
        }
        return GateFraming.frame(kind: LocalAnswer.kind, w)
    }

    public static func decode(kind: UInt8, payload: [UInt8]) throws(GateFraming.Failure) -> LocalAnswer {
        guard kind == LocalAnswer.kind else { throw .malformed(kind: kind) }
        var r = GateFraming.Reader(payload, kind: kind)
        let outcome: Outcome
        switch try r.byte() {
        case 0: outcome = .serving
        case 1: outcome = .notServing(try r.string())
        case 2: outcome = .noConnection(try Reason.decode(from: &r))
        case 3:
            let code = try r.integer()
            guard code >= 0 && code <= Int64(Int32.max) else { throw .malformed(kind: kind) }
            outcome = .rpcFailed(code: Int32(code), message: try r.string())
        default: throw .malformed(kind: kind)
        }
        let server = try r.string()
        var services: [ServiceLine] = []
        for _ in 0..<(try r.count()) {
            let service = try r.string()
            let serving = try r.flag()
            services.append(ServiceLine(service: service, serving: serving, status: try r.string()))
        }
        try r.end()
        return LocalAnswer(outcome: outcome, server: server, services: services)
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
