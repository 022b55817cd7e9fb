import Flags

/// Why a listener is not a gRPC server the agent can check (or not now), as data: the flags
/// that would help are named only where the reason is worded.
public enum Rejection: Equatable, Sendable, CustomStringConvertible {
    /// It requires a client certificate and was offered none; `foundByTLS`: it was found to
    /// speak TLS once plaintext failed (no TLS flag was given).
    case certificateRequired(foundByTLS: Bool)
    /// It requires a client certificate and refused the one it was offered.
    case certificateRefused
    /// In the words of the step that failed.
    case other(String)

    public var description: String {
        switch self {
        case .certificateRequired(let foundByTLS):
            return (foundByTLS ? "a TLS server that requires" : "the server requires")
                + " a client certificate (\(GateConfiguration.clientCertificateAdvice))"
        case .certificateRefused: return "the server requires a client certificate and rejected ours"
        case .other(let text): return text
        }
    }
}

/// The health protocol's facts as plain values, and the one verdict the agent reaches about a
/// question: what the server said (its serving status, or the status its call ended with, and
/// whether the server itself sent it), why there is no answer, or that grpc-init drains. Both
/// processes hold them; each edge renders them once (the supervisor's log, the HTTP body, the
/// gRPC answer, the probe's Go wording).

/// grpc.health.v1's ServingStatus (health.proto).
public enum ServingStatus: Equatable, Sendable, CustomStringConvertible {
    case unknown, serving, notServing, serviceUnknown
    /// A value health.proto does not name; an enum is an int32 on the wire.
    case other(Int32)

    public init(_ raw: Int32) {
        switch raw {
        case 0: self = .unknown
        case 1: self = .serving
        case 2: self = .notServing
        case 3: self = .serviceUnknown
        default: self = .other(raw)
        }
    }

    public var rawValue: Int32 {
        switch self {
        case .unknown: return 0
        case .serving: return 1
        case .notServing: return 2
        case .serviceUnknown: return 3
        case .other(let n): return n
        }
    }

    /// The enum value's name, as protobuf-go's String() prints it (the number when unknown).
    public var description: String {
        switch self {
        case .unknown: return "UNKNOWN"
        case .serving: return "SERVING"
        case .notServing: return "NOT_SERVING"
        case .serviceUnknown: return "SERVICE_UNKNOWN"
        case .other(let n): return "\(n)"
        }
    }
}

/// gRPC status codes with the names grpc-go prints (codes.Code.String()).
public enum GRPCStatusCode: Int, Sendable, CaseIterable {
    case ok = 0, canceled, unknown, invalidArgument, deadlineExceeded, notFound, alreadyExists
    case permissionDenied, resourceExhausted, failedPrecondition, aborted, outOfRange
    case unimplemented, internalError, unavailable, dataLoss, unauthenticated

    public var goName: String {
        switch self {
        case .ok: return "OK"
        case .canceled: return "Canceled"
        case .unknown: return "Unknown"
        case .invalidArgument: return "InvalidArgument"
        case .deadlineExceeded: return "DeadlineExceeded"
        case .notFound: return "NotFound"
        case .alreadyExists: return "AlreadyExists"
        case .permissionDenied: return "PermissionDenied"
        case .resourceExhausted: return "ResourceExhausted"
        case .failedPrecondition: return "FailedPrecondition"
        case .aborted: return "Aborted"
        case .outOfRange: return "OutOfRange"
        case .unimplemented: return "Unimplemented"
        case .internalError: return "Internal"
        case .unavailable: return "Unavailable"
        case .dataLoss: return "DataLoss"
        case .unauthenticated: return "Unauthenticated"
        }
    }
}

/// A call's outcome: the code and the (already percent-decoded) message.
public struct GRPCStatus: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: GRPCStatusCode
    /// Set when the server sent a code outside 0...16; printed as grpc-go prints it.
    public var rawCode: Int
    public var message: String
    /// The server sent this status (grpc-status); otherwise the client concluded it (an HTTP
    /// status, a reset, a broken message, a deadline). Not part of equality.
    public var fromServer = false

    public init(_ code: GRPCStatusCode, _ message: String = "") {
        self.code = code
        self.rawCode = code.rawValue
        self.message = message
    }

    public init(rawCode: Int, message: String, fromServer: Bool = false) {
        self.code = GRPCStatusCode(rawValue: rawCode) ?? .unknown
        self.rawCode = rawCode
        self.message = message
        self.fromServer = fromServer
    }

    public static func == (a: GRPCStatus, b: GRPCStatus) -> Bool {
        a.code == b.code && a.rawCode == b.rawCode && a.message == b.message
    }

    /// grpc-go's status error text: "rpc error: code = NotFound desc = unknown service".
    public var description: String {
        let name = GRPCStatusCode(rawValue: rawCode)?.goName ?? "Code(\(rawCode))"
        return "rpc error: code = \(name) desc = \(message)"
    }

    /// The server's own answer that it has no such method (an HTTP 404 maps to the same code,
    /// but says nothing of the kind).
    public var isServerUnimplemented: Bool { code == .unimplemented && fromServer }
}

/// Why no connection to the server could be made: the step that failed and the transport's
/// account of it (no flag is named: each edge knows its own flags).
public struct Unreachable: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable {
        /// The name did not resolve.
        case resolve = 0
        /// connect(2) or the TLS handshake failed.
        case connect = 1
        /// The server wanted a client certificate, or refused ours.
        case certificate = 2
        /// The HTTP/2 handshake did not complete.
        case handshake = 3
        /// No connection within the connect timeout.
        case timeout = 4
    }

    public var kind: Kind
    public var detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { detail }
}

/// Why the server is not ready, as data.
public enum Reason: Error, Equatable, Sendable, CustomStringConvertible {
    /// The agent has not said anything yet.
    case starting
    /// Nothing of the process tree listens yet.
    case noListener
    /// /proc is missing: discovery cannot work.
    case noProc
    /// Listeners were found, none a gRPC server we can check: each one and why.
    case noGRPCServer([Candidate])
    /// No connection to the server could be made.
    case unreachable(Unreachable)
    /// The server answered with a status other than SERVING.
    case status(ServingStatus)
    /// The health call (a Check, or a Watch the connection lost) ended with this status, sent by
    /// the server or concluded by the client.
    case rpc(GRPCStatus)
    /// The server ended the Watch with this status: whatever it says, a Watch that ends is not an
    /// answer to "is it serving" (the agent watches again on a new connection).
    case watchEnded(GRPCStatus)
    /// The server answered something that does not decode.
    case undecodable(String)
    /// The agent cannot set up what it connects with (TLS files, SPIFFE credentials).
    case setup(String)
    /// The agent is being stopped.
    case draining
    /// The server is found and watched; its first answer has not come yet.
    case awaitingAnswer
    /// With several services: this one is not SERVING, and why.
    indirect case service(String, Reason)
    /// With several servers found: this one (as an -addr would name it) is not SERVING, and why.
    indirect case server(String, Reason)

    public struct Candidate: Equatable, Sendable {
        public let listener: String
        public let why: Rejection
        public init(listener: String, why: Rejection) {
            self.listener = listener
            self.why = why
        }
    }

    public var description: String {
        switch self {
        case .starting: return "no report from the health agent yet"
        case .noListener: return "no listening socket found yet"
        case .noProc: return "cannot find the server's port without /proc (give -\(GateConfiguration.name(of: \.addr)))"
        case .noGRPCServer(let candidates):
            return "no gRPC server among the listening sockets: " + candidates.map { "\($0.listener): \($0.why)" }.joined(separator: "; ")
        case .unreachable(let why): return why.description
        case .status(let status): return status.description
        case .rpc(let status): return status.description
        case .watchEnded(let status): return "Health/Watch ended: \(status)"
        case .setup(let text): return text
        case .undecodable(let why): return Verdict.undecodableMessage(why)
        case .draining: return Drain.word
        case .awaitingAnswer: return "waiting for the server's first health answer"
        case .service(let name, let why): return "service \(goQuote(name)): \(why)"
        case .server(let name, let why): return "\(name): \(why)"
        }
    }

    /// The reason itself, without the service or the server it is about.
    public var innermost: Reason {
        if case .service(_, let why) = self { return why.innermost }
        if case .server(_, let why) = self { return why.innermost }
        return self
    }

    /// The reason without the service it is about (the server, if named, kept).
    public var withoutService: Reason {
        if case .service(_, let why) = self { return why.withoutService }
        return self
    }
}

/// The one answer to "is the server healthy", whichever edge asked: the local probe socket,
/// `/readyz`, `/livez`, the endpoint's gRPC Check, each renders it in its own terms.
public enum Verdict: Equatable, Sendable {
    case serving
    /// The server answered another status.
    case notServing(ServingStatus)
    /// grpc-init drains: NOT_SERVING to every edge, whatever the server says.
    case draining
    /// No connection to the server, and why: the probe's exit 2.
    case unreachable(Reason)
    /// The health call failed (the server's status, or one the client concluded): exit 3.
    case rpcFailed(GRPCStatus)

    /// The verdict a reason for not being ready amounts to.
    public init(_ reason: Reason) {
        switch reason.innermost {
        case .status(let status): self = .notServing(status)
        case .rpc(let status): self = .rpcFailed(status)
        case .watchEnded: self = .rpcFailed(GRPCStatus(.unavailable, reason.innermost.description))
        case .undecodable(let why): self = .rpcFailed(GRPCStatus(.internalError, Verdict.undecodableMessage(why)))
        case .draining: self = .draining
        default: self = .unreachable(reason)
        }
    }

    /// The verdict a service's state in the health model amounts to.
    public init(_ state: HealthState) {
        switch state {
        case .serving: self = .serving
        case .notServing(let why): self.init(why)
        }
    }

    public static func undecodableMessage(_ why: String) -> String { "grpc: failed to unmarshal the received message: \(why)" }

    public var isServing: Bool { self == .serving }

    /// Whether the server's health service answered at all (the question of `/livez`): any
    /// status, or a call status the server sent other than a deadline.
    public var serverAnswered: Bool {
        switch self {
        case .serving, .notServing: return true
        case .rpcFailed(let status): return status.fromServer && status.code != .deadlineExceeded
        case .draining, .unreachable: return false
        }
    }

    /// The verdict in a few words: the status's name, or why there is none.
    public var words: String {
        switch self {
        case .serving: return "SERVING"
        case .notServing(let status): return status.description
        case .draining: return "NOT_SERVING (\(Drain.word))"
        case .unreachable(let reason): return reason.description
        case .rpcFailed(let status): return status.description
        }
    }
}

/// The name a service goes by in lines: the empty name is the server as a whole.
public func serviceLabel(_ service: String) -> String { service.isEmpty ? "(server)" : service }

/// One configured service and its verdict, for verbose answers: "[+]db SERVING", as
/// kube-apiserver lists its checks; a service a fresh List names that is not watched, "[+]db
/// SERVING (listed, not required)"; a List that could not be taken, "[?]services could not be
/// listed: why" (named for its server, with several); an answer cut to fit ends with "[?]3 more
/// services not shown".
public struct ServiceLine: Equatable, Sendable, CustomStringConvertible {
    public enum Role: UInt8, Equatable, Sendable {
        /// Watched: readiness waits for it.
        case required = 0
        /// Named by the server's List, not watched: said, not waited for.
        case listed = 1
        /// The server's List failed: `verdict` says why, `service` names the server (or is empty).
        case listFailed = 2
    }

    public let service: String
    public let verdict: Verdict
    public let role: Role

    public init(service: String, verdict: Verdict, role: Role = .required) {
        self.service = service
        self.verdict = verdict
        self.role = role
    }

    public var description: String {
        let mark = verdict.isServing ? "+" : "-"
        switch role {
        case .required: return "[\(mark)]\(serviceLabel(service)) \(verdict.words)"
        case .listed: return "[\(mark)]\(serviceLabel(service)) \(verdict.words) (listed, not required)"
        case .listFailed: return "[?]\(service.isEmpty ? "" : service + " ")services could not be listed: \(verdict.words)"
        }
    }

    /// The line that ends an answer cut to fit (the local probe socket's frame): how many lines
    /// it leaves out.
    public static func notShown(_ count: Int) -> String { "[?]\(count) more services not shown" }
}

// MARK: Coding

extension GRPCStatus {
    func encode(into w: inout GateFraming.Writer) {
        w.integer(Int64(rawCode))
        w.string(message)
        w.flag(fromServer)
    }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> GRPCStatus {
        let code = try r.integer()
        guard code >= Int64(Int32.min) && code <= Int64(Int32.max) else { throw .malformed(kind: r.kind) }
        let message = try r.string()
        return GRPCStatus(rawCode: Int(code), message: message, fromServer: try r.flag())
    }
}

extension ServingStatus {
    func encode(into w: inout GateFraming.Writer) { w.integer(Int64(rawValue)) }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> ServingStatus {
        let raw = try r.integer()
        guard raw >= Int64(Int32.min) && raw <= Int64(Int32.max) else { throw .malformed(kind: r.kind) }
        return ServingStatus(Int32(raw))
    }
}

extension Rejection {
    func encode(into w: inout GateFraming.Writer) {
        switch self {
        case .other(let text):
            w.byte(0)
            w.string(text)
        case .certificateRequired(let foundByTLS):
            w.byte(1)
            w.flag(foundByTLS)
        case .certificateRefused: w.byte(2)
        }
    }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> Rejection {
        switch try r.byte() {
        case 0: return .other(try r.string())
        case 1: return .certificateRequired(foundByTLS: try r.flag())
        case 2: return .certificateRefused
        default: throw .malformed(kind: r.kind)
        }
    }
}

extension Reason {
    func encode(into w: inout GateFraming.Writer) {
        switch self {
        case .starting: w.byte(0)
        case .noListener: w.byte(1)
        case .noProc: w.byte(2)
        case .noGRPCServer(let candidates):
            w.byte(3)
            w.list(candidates) { candidate, entry in
                entry.string(candidate.listener)
                candidate.why.encode(into: &entry)
            }
        case .unreachable(let why):
            w.byte(4)
            w.byte(why.kind.rawValue)
            w.string(why.detail)
        case .status(let status):
            w.byte(5)
            status.encode(into: &w)
        case .rpc(let status):
            w.byte(6)
            status.encode(into: &w)
        case .watchEnded(let status):
            w.byte(7)
            status.encode(into: &w)
        case .undecodable(let text): w.byte(8); w.string(text)
        case .setup(let text): w.byte(9); w.string(text)
        case .draining: w.byte(10)
        case .awaitingAnswer: w.byte(12)
        case .service(let name, let why):
            w.byte(11)
            w.string(name)
            // One level: a service's reason is never another service's.
            why.withoutService.encode(into: &w)
        case .server(let name, let why):
            w.byte(13)
            w.string(name)
            why.innermost.encode(into: &w)
        }
    }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> Reason {
        switch try r.byte() {
        case 0: return .starting
        case 1: return .noListener
        case 2: return .noProc
        case 3:
            var candidates: [Candidate] = []
            for _ in 0..<(try r.count()) {
                let listener = try r.string()
                candidates.append(Candidate(listener: listener, why: try Rejection.decode(from: &r)))
            }
            return .noGRPCServer(candidates)
        case 4:
            guard let kind = Unreachable.Kind(rawValue: try r.byte()) else { throw .malformed(kind: r.kind) }
            return .unreachable(Unreachable(kind, try r.string()))
        case 5: return .status(try ServingStatus.decode(from: &r))
        case 6: return .rpc(try GRPCStatus.decode(from: &r))
        case 7: return .watchEnded(try GRPCStatus.decode(from: &r))
        case 8: return .undecodable(try r.string())
        case 9: return .setup(try r.string())
        case 10: return .draining
        case 12: return .awaitingAnswer
        case 11:
            let name = try r.string()
            let why = try Reason.decode(from: &r)
            if case .service = why { throw .malformed(kind: r.kind) }
            return .service(name, why)
        case 13:
            let name = try r.string()
            let why = try Reason.decode(from: &r)
            switch why {
            case .service, .server: throw .malformed(kind: r.kind)
            default: return .server(name, why)
            }
        default: throw .malformed(kind: r.kind)
        }
    }
}

extension Verdict {
    func encode(into w: inout GateFraming.Writer) {
        switch self {
        case .serving: w.byte(0)
        case .notServing(let status):
            w.byte(1)
            status.encode(into: &w)
        case .unreachable(let reason):
            w.byte(2)
            reason.encode(into: &w)
        case .rpcFailed(let status):
            w.byte(3)
            status.encode(into: &w)
        case .draining: w.byte(4)
        }
    }

    static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> Verdict {
        switch try r.byte() {
        case 0: return .serving
        case 1: return .notServing(try ServingStatus.decode(from: &r))
        case 2: return .unreachable(try Reason.decode(from: &r))
        case 3: return .rpcFailed(try GRPCStatus.decode(from: &r))
        case 4: return .draining
        default: throw .malformed(kind: r.kind)
        }
    }
}
