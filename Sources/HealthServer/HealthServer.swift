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
    /// The servers a fresh Health/List may be asked of (each watched on a connection, less
    /// those that answered UNIMPLEMENTED for it), in the order of their names.
    public var listable: [String]

    public init(services: [String], states: [String: HealthState], overall: HealthState, draining: Bool, server: String, connected: Bool,
                withoutHealth: Bool = false, servers: [ServerStates] = [], listable: [String] = []) {
        self.services = services
        self.states = states
        self.overall = overall
        self.draining = draining
        self.server = server
        self.connected = connected
        self.withoutHealth = withoutHealth
        self.servers = servers
        self.listable = listable
    }

    /// Why the server is not ready as a whole; nil when it is.
    var overallReason: Reason? {
        if case .notServing(let why) = overall { return why }
        return nil
    }

    /// Each configured service with its verdict, for verbose answers; with several servers,
    /// each server's, named (a server without a health service is listed with its answer).
    public var lines: [ServiceLine] { lines([]) }

    /// The verbose answer's lines: each configured service with its verdict, then each service a
    /// fresh List named that is not watched (or, when the List could not be taken, one line that
    /// says why); with several servers, each server's, named.
    public func lines(_ listings: [ServerListing]) -> [ServiceLine] {
        guard !servers.isEmpty else {
            return services.map { line($0, states[$0]) } + listings.flatMap { listedLines($0, watched: services, named: false) }
        }
        return servers.flatMap { server in
            // Each service this server has: with `-ready-service '*'`, the ones it lists.
            let watched = services.filter { server.states[$0] != nil } + server.states.keys.filter { !services.contains($0) }.sorted()
            let lines = watched.map { service in
                ServiceLine(service: server.name + (service.isEmpty ? "" : " " + service), verdict: line(service, server.states[service]).verdict)
            }
            return lines + listings.filter { $0.server == server.name }.flatMap { listedLines($0, watched: watched, named: true) }
        }
    }

    /// A fresh List's lines: the services it names beyond those watched, or why it failed.
    private func listedLines(_ listing: ServerListing, watched: [String], named: Bool) -> [ServiceLine] {
        switch listing.outcome {
        case .unimplemented: return []
        case .failed(let verdict): return [ServiceLine(service: named ? listing.server : "", verdict: verdict, role: .listFailed)]
        case .listed(let statuses):
            return statuses.keys.sorted().filter { !watched.contains($0) }.map { service in
                let name = named ? listing.server + (service.isEmpty ? "" : " " + service) : service
                return ServiceLine(service: name, verdict: listedVerdict(statuses[service]!), role: .listed)
            }
        }
    }

    /// A listed service's status as the verbose answers and the endpoint's List give it: while
    /// grpc-init drains, nothing is SERVING.
    func listedVerdict(_ status: ServingStatus) -> Verdict {
        status == .serving ? (draining ? .draining : .serving) : .notServing(status)
    }

    private func line(_ service: String, _ state: HealthState?) -> ServiceLine {
        let verdict = Verdict(state ?? .notServing(.starting))
        return ServiceLine(service: service, verdict: draining && verdict == .serving ? .draining : verdict)
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
        /// The endpoint's gRPC List (gRFC A90): the services watched and the ones the servers
        /// list, each with its status.
        case list
    }

    public var kind: Kind
    /// The service asked about; nil: every configured service (the question of `/readyz` and of
    /// the probe without -service).
    public var service: String?
    /// A ready question answered with each service listed (`/readyz?verbose`, the probe's -v):
    /// the services the servers list are listed too.
    public var verbose: Bool
    /// The fresh Lists taken for this question; nil until they are.
    public var listings: [ServerListing]?

    public init(_ kind: Kind, service: String?, verbose: Bool = false, listings: [ServerListing]? = nil) {
        self.kind = kind
        self.service = service
        self.verbose = verbose
        self.listings = listings
    }

    /// The question needs the servers' fresh Lists before it is answered.
    public var needsLists: Bool { listings == nil && ((verbose && kind == .ready) || kind == .list) }
}

/// One server's fresh Health/List (gRFC A90), taken for a verbose answer or the endpoint's List.
public struct ServerListing: Equatable, Sendable {
    public enum Outcome: Equatable, Sendable {
        /// Each service the server lists, with its status.
        case listed([String: ServingStatus])
        /// The server itself answered UNIMPLEMENTED: it has no List, and nothing is said of it.
        case unimplemented
        /// No list could be taken (a failed call, a deadline, no connection): said in one line,
        /// the answer is not failed for it.
        case failed(Verdict)
    }

    /// The server, as an -addr would name it.
    public var server: String
    public var outcome: Outcome

    public init(server: String, _ outcome: Outcome) {
        self.server = server
        self.outcome = outcome
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
    /// A fresh Health/List of each of these servers first; the question is then asked again with
    /// what they gave (`HealthQuestion.listings`).
    case list(servers: [String])
}

/// The health server's decisions, without I/O: from a snapshot of the health model and a
/// question, one verdict, rendered for each edge. The agent's endpoint and local probe socket
/// only carry bytes to and from here.
public enum HealthServer {
    /// What is not ready is said at once, with why (every configured service, or the one
    /// named); what is ready is confirmed by a Check, so that a hung server fails readiness as it
    /// would an exec probe. A service the model does not watch is asked directly. Liveness asks
    /// the server whatever the model holds: a NOT_SERVING server is alive.
    /// A verbose ready question and the endpoint's List take each server's List first (never a
    /// question that is not verbose: kubelet's probes cost what they did).
    public static func decide(_ question: HealthQuestion, _ snapshot: HealthSnapshot) -> HealthDecision {
        if question.needsLists && !snapshot.listable.isEmpty { return .list(servers: snapshot.listable) }
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
        case .list:
            // The verdict is the server's as a whole (the list's "" entry), from the model.
            guard snapshot.connected else { return .now(.unreachable(snapshot.overallReason ?? .starting)) }
            if snapshot.draining { return .now(.draining) }
            if case .notServing(let why) = snapshot.overall { return .now(Verdict(why)) }
            return .now(.serving)
        }
    }

    /// A fresh List's end: the services listed, the server's own UNIMPLEMENTED, or why no list
    /// could be taken.
    public static func listing(status: GRPCStatus, message: [UInt8]?, unreachable: Unreachable?) -> ServerListing.Outcome {
        if let unreachable { return .failed(.unreachable(.unreachable(unreachable))) }
        if status.isServerUnimplemented { return .unimplemented }
        guard status.code == .ok else { return .failed(.rpcFailed(status)) }
        guard let message else { return .failed(.rpcFailed(GRPCStatus(.internalError, "server sent no response message"))) }
        do {
            return .listed(Dictionary(try Health.decodeListResponse(message).map { ($0.service, $0.status) }, uniquingKeysWith: { $1 }))
        } catch {
            if case .tooMany = error { return .failed(.rpcFailed(GRPCStatus(.resourceExhausted, error.description))) }
            return .failed(.rpcFailed(GRPCStatus(.internalError, Verdict.undecodableMessage(error.description))))
        }
    }

    /// A List that has not ended by the question's deadline.
    public static let listTimedOut = ServerListing.Outcome.failed(.rpcFailed(GRPCStatus(.deadlineExceeded, "context deadline exceeded")))

    /// A List whose connection the agent let go (its server no longer watched) before it ended.
    public static let listLost = ServerListing.Outcome.failed(.rpcFailed(GRPCStatus(.unavailable, "the server is no longer watched")))

    /// One deadline per question, whatever it waits for: its Lists may take at most half of the
    /// time from `now` to `deadline`, so that the Check that follows always has the other half
    /// (a question answered within its timeout, and a probe that waits that long answered).
    public static func listsDeadline(now: Int64, deadline: Int64) -> Int64 {
        let (half, overflow) = now.addingReportingOverflow(remaining(until: deadline, now: now) / 2)
        return overflow ? .max : half
    }

    /// The time left to `deadline` for a call started `now`: at least a nanosecond, so that a
    /// call started late still carries a deadline (one already passed, in effect).
    public static func remaining(until deadline: Int64, now: Int64) -> Int64 {
        let (left, overflow) = deadline.subtractingReportingOverflow(now)
        if overflow { return deadline > now ? .max : 1 }
        return max(left, 1)
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
        case .ready, .watch, .list:
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

    /// A90's words for a List with more services than it may answer with.
    public static let listTooLong = GRPCStatus(.resourceExhausted, "server health list exceeds maximum capacity: \(Health.maxListed)")

    /// The endpoint's gRPC List: "" (the server as a whole, the List's verdict), each service
    /// watched with its state in the model (with several servers, SERVING when every one that
    /// counts says so), and each service the fresh Lists name beyond those, SERVING only when
    /// every server that lists it says so, else the first one's other status (in the order of
    /// the servers' names). Nothing is SERVING while grpc-init drains; a List that could not be
    /// taken adds nothing. More than A90's 100 entries is RESOURCE_EXHAUSTED, and no connection
    /// at all is the Check's UNAVAILABLE.
    public static func grpcList(_ verdict: Verdict, _ snapshot: HealthSnapshot, _ listings: [ServerListing])
        -> (response: [(service: String, status: ServingStatus)]?, status: GRPCStatus) {
        if !snapshot.connected, case .unreachable = verdict { return (nil, grpc(verdict).status) }
        // What a List entry can say: a verdict without a response of its own is NOT_SERVING.
        func status(_ verdict: Verdict) -> ServingStatus { grpc(verdict).response ?? .notServing }
        var statuses: [String: ServingStatus] = ["": status(verdict)]
        for service in snapshot.services where !service.isEmpty {
            statuses[service] = status(snapshot.draining ? .draining : snapshot.states[service].map { Verdict($0) } ?? .unreachable(.starting))
        }
        let watched = Set(statuses.keys)
        for listing in listings.sorted(by: { $0.server < $1.server }) {
            guard case .listed(let listed) = listing.outcome else { continue }
            for (service, said) in listed where !watched.contains(service) {
                let listedStatus = status(snapshot.listedVerdict(said))
                // SERVING only if every server that lists it says so; else the first other word.
                if statuses[service] == nil || statuses[service] == .serving { statuses[service] = listedStatus }
            }
            guard statuses.count <= Health.maxListed else { return (nil, listTooLong) }
        }
        guard statuses.count <= Health.maxListed else { return (nil, listTooLong) }
        return (statuses.keys.sorted().map { ($0, statuses[$0]!) }, GRPCStatus(.ok))
    }

    /// The Watch relayed: an ended call's status as the endpoint's client gets it.
    public static func watchEnded(_ status: GRPCStatus) -> GRPCStatus {
        status.fromServer ? status : GRPCStatus(.unavailable, status.description)
    }
}
