import Flags
import GateProtocol
import Wire

/// What the health model holds when a question arrives.
public struct HealthSnapshot: Equatable, Sendable {
    /// The configured services, in order; [""] is the server as a whole.
    public var services: [String]
    /// Each configured service's state.
    public var states: [String: HealthState]
    /// Every service SERVING, or the first that is not and why.
    public var overall: HealthState
    /// The supervisor asked for a drain.
    public var draining: Bool
    /// The server as an -addr would name it; empty while none is found.
    public var server: String
    /// A connection to the server is kept (a Check can be made).
    public var connected: Bool
    /// The server has no health service (it answered UNIMPLEMENTED itself) and, with no
    /// service asked for by name, is ready because it answers gRPC; with several servers, every
    /// one that counts.
    public var withoutHealth: Bool
    /// With several servers found: each one's services, in the order of their names.
    public var servers: [ServerStates]

    public init(services: [String], states: [String: HealthState], overall: HealthState, draining: Bool, server: String, connected: Bool,
                withoutHealth: Bool = false, servers: [ServerStates] = []) {
        self.services = services
        self.states = states
        self.overall = overall
        self.draining = draining
        self.server = server
        self.connected = connected
        self.withoutHealth = withoutHealth
        self.servers = servers
    }

    /// Why the server is not ready as a whole; nil when it is.
    var overallReason: Reason? {
        if case .notServing(let why) = overall { return why }
        return nil
    }

    /// Each configured service with its verdict, for verbose answers; with several servers,
    /// each server's, named (a server without a health service is listed with its answer).
    public var lines: [ServiceLine] {
        guard !servers.isEmpty else { return services.map { line($0, states[$0]) } }
        return servers.flatMap { server in
            // Each service this server has: with `-ready-service '*'`, the ones it lists.
            (services.filter { server.states[$0] != nil } + server.states.keys.filter { !services.contains($0) }.sorted()).map { service in
                ServiceLine(service: server.name + (service.isEmpty ? "" : " " + service), verdict: line(service, server.states[service]).verdict)
            }
        }
    }

    private func line(_ service: String, _ state: HealthState?) -> ServiceLine {
        switch state ?? .notServing(.starting) {
        case .serving: return ServiceLine(service: service, verdict: draining ? .draining : .serving)
        case .notServing(let why): return ServiceLine(service: service, verdict: Verdict(why))
        }
    }
}

/// One server found by discovery, and its services' states.
public struct ServerStates: Equatable, Sendable {
    public var name: String
    public var states: [String: HealthState]
    /// It has a health service (or no server has one): its states hold readiness back.
    public var counts: Bool

    public init(name: String, states: [String: HealthState], counts: Bool) {
        self.name = name
        self.states = states
        self.counts = counts
    }
}

/// A question about the server's health, whichever edge it came in on.
public struct HealthQuestion: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Ready to take traffic: the local probe socket, `/readyz`, the endpoint's gRPC Check.
        case ready
        /// Alive: `/livez`, any answer of the server's health service.
        case live
        /// The endpoint's gRPC Watch: the server's own Watch, relayed.
        case watch
    }

    public var kind: Kind
    /// The service asked about; nil: every configured service (the question of `/readyz` and of
    /// the probe without -service).
    public var service: String?

    public init(_ kind: Kind, service: String?) {
        self.kind = kind
        self.service = service
    }
}

/// What a question needs: a verdict now, or a call to the server first.
public enum HealthDecision: Equatable, Sendable {
    /// The verdict, and with several services the one it is about.
    case now(Verdict, service: String? = nil)
    /// A fresh Check of this service decides (its answer goes through `HealthServer.verdict`).
    case check(service: String)
    /// The server's Watch of this service, relayed message by message.
    case watch(service: String)
}

/// The health server's decisions, without I/O: from a snapshot of the health model and a
/// question, one verdict, rendered for each edge. The agent's endpoint and local probe socket
/// only carry bytes to and from here.
public enum HealthServer {
    /// What is not ready is said at once, with why (every configured service, or the one
    /// named); what is ready is confirmed by a Check, so that a hung server fails readiness as it
    /// would an exec probe. A service the model does not watch is asked directly. Liveness asks
    /// the server whatever the model holds: a NOT_SERVING server is alive.
    public static func decide(_ question: HealthQuestion, _ snapshot: HealthSnapshot) -> HealthDecision {
        let asked = question.service
        switch question.kind {
        case .ready:
            if snapshot.draining { return .now(.draining) }
            let watched = asked.map { snapshot.services.contains($0) } ?? true
            if watched, case .notServing(let why) = asked.flatMap({ snapshot.states[$0] }) ?? snapshot.overall {
                if case .service(let name, _) = why { return .now(Verdict(why), service: name) }
                return .now(Verdict(why))
            }
            guard snapshot.connected else { return .now(.unreachable(snapshot.overallReason ?? .starting)) }
            return .check(service: asked ?? snapshot.services.first ?? "")
        case .live:
            guard snapshot.connected else { return .now(.unreachable(snapshot.overallReason ?? .starting)) }
            return .check(service: asked ?? "")
        case .watch:
            if snapshot.draining { return .now(.draining) }
            guard snapshot.connected else { return .now(.unreachable(snapshot.overallReason ?? .starting)) }
            return .watch(service: asked ?? "")
        }
    }

    /// The verdict without a call to the server: a decision that needed one, when there is no
    /// connection to make it on.
    public static func verdict(for question: HealthQuestion, _ snapshot: HealthSnapshot) -> Verdict {
        var disconnected = snapshot
        disconnected.connected = false
        if case .now(let verdict, _) = decide(question, disconnected) { return verdict }
        return .unreachable(snapshot.overallReason ?? .starting)
    }

    /// A Check's end: the server's answer, the status the call ended with, or, when no
    /// connection could be made for it, why.
    public static func verdict(status: GRPCStatus, message: [UInt8]?, unreachable: Unreachable?) -> Verdict {
        if let unreachable { return .unreachable(.unreachable(unreachable)) }
        return Verdict(checkStatus: status, message: message)
    }

    /// A Check of `service` ended: as above, except that a server the model holds to have no
    /// health service is ready (and alive) when the server itself answers UNIMPLEMENTED for the
    /// server as a whole: it still answers gRPC. A 404 or a deadline is no such answer.
    public static func verdict(checking service: String, status: GRPCStatus, message: [UInt8]?, unreachable: Unreachable?,
                               _ snapshot: HealthSnapshot) -> Verdict {
        if unreachable == nil && service.isEmpty && snapshot.withoutHealth && status.isServerUnimplemented { return .serving }
        return verdict(status: status, message: message, unreachable: unreachable)
    }

    /// How a SERVING verdict reads for a server without a health service.
    public static let servingWithoutHealth = "SERVING (no health service: ready because it answers gRPC)"

    // MARK: Rendering

    /// `/readyz` and `/livez` over HTTP: the status code and the body's lines. With `verbose`,
    /// `/readyz` lists each configured service first, as kube-apiserver lists its checks;
    /// `service` names the service a verdict is about, with several.
    /// `withoutHealth`: the verdict is about a server without a health service (the words say so).
    public static func http(_ verdict: Verdict, _ kind: HealthQuestion.Kind, verbose lines: [ServiceLine]?,
                            service: String? = nil, withoutHealth: Bool = false) -> (status: Int, body: [String]) {
        let said = verdict == .serving && withoutHealth && service == nil ? servingWithoutHealth : verdict.words
        switch kind {
        case .ready, .watch:
            let words = verdict == .draining ? Drain.word : said
            let text = service.map { "service \(goQuote($0)): \(words)" } ?? words
            guard let lines else { return (verdict.isServing ? 200 : 503, [text]) }
            let last = verdict.isServing ? "readyz check passed" : "readyz check failed: \(text)"
            let listed = lines.map { line in
                withoutHealth && line.service.isEmpty && line.verdict == .serving ? "[+]\(serviceLabel(line.service)) \(servingWithoutHealth)" : line.description
            }
            return (verdict.isServing ? 200 : 503, listed + [last])
        case .live:
            return (verdict.serverAnswered ? 200 : 503, [said])
        }
    }

    /// The endpoint's gRPC Check: the response's status, or the call's status. A failure the
    /// agent concluded itself (a deadline, an HTTP 404, a lost connection) is not passed on as
    /// if the server had sent it: a client of the endpoint would read an UNIMPLEMENTED as "no
    /// health service here".
    public static func grpc(_ verdict: Verdict) -> (response: ServingStatus?, status: GRPCStatus) {
        switch verdict {
        case .serving: return (.serving, GRPCStatus(.ok))
        case .notServing(let status): return (status, GRPCStatus(.ok))
        case .draining: return (.notServing, GRPCStatus(.ok))
        case .unreachable(let reason): return (nil, GRPCStatus(.unavailable, reason.description))
        case .rpcFailed(let status):
            // A call cannot end OK without a response: never answered so.
            if status.code == .ok { return (nil, GRPCStatus(.internalError, "server sent no response message")) }
            if status.fromServer { return (nil, status) }
            if status.code == .deadlineExceeded { return (nil, GRPCStatus(.deadlineExceeded, status.message)) }
            return (nil, GRPCStatus(.unavailable, status.description))
        }
    }

    /// The Watch relayed: an ended call's status as the endpoint's client gets it.
    public static func watchEnded(_ status: GRPCStatus) -> GRPCStatus {
        status.fromServer ? status : GRPCStatus(.unavailable, status.description)
    }
}
