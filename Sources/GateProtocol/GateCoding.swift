import Flags

/// Each message's frame, and back. A kind this version does not know decodes to nil and is
/// skipped: a newer peer's extra messages do not break an older one.
extension AgentMessage {
    private enum Kind: UInt8 {
        case health = 1, found, passedOver, goAway, noWatch, svid, tlsOnHealthPort, invalidConfiguration, service, answered, noHealthService, gone
    }

    public var frame: [UInt8] {
        var w = GateFraming.Writer()
        let kind: Kind
        switch self {
        case .health(let state):
            kind = .health
            state.encode(into: &w)
        case .service(let name, let state):
            kind = .service
            w.string(name)
            state.encode(into: &w)
        case .answered:
            kind = .answered
        case .gone(let server):
            kind = .gone
            w.string(server)
        case .found(let server, let pid, let reach):
            kind = .found
            w.string(server)
            w.integer(Int64(pid ?? -1))
            w.byte(reach.rawValue)
        case .passedOver(let listener, let pid, let why):
            kind = .passedOver
            w.string(listener)
            w.integer(Int64(pid ?? -1))
            why.encode(into: &w)
        case .goAway(let server):
            kind = .goAway
            w.string(server)
        case .noWatch(let server, let interval):
            kind = .noWatch
            w.string(server)
            w.integer(interval)
        case .svid(let id, let rotated):
            kind = .svid
            w.string(id)
            w.flag(rotated)
        case .tlsOnHealthPort:
            kind = .tlsOnHealthPort
        case .invalidConfiguration(let why):
            kind = .invalidConfiguration
            w.string(why)
        case .noHealthService(let server):
            kind = .noHealthService
            w.string(server)
        }
        return GateFraming.frame(kind: kind.rawValue, w)
    }

    /// The message a frame holds; nil for a kind this version does not know.
    public static func decode(kind raw: UInt8, payload: [UInt8]) throws(GateFraming.Failure) -> AgentMessage? {
        guard let kind = Kind(rawValue: raw) else { return nil }
        var r = GateFraming.Reader(payload, kind: raw)
        let message: AgentMessage
        switch kind {
        case .health: message = .health(try HealthState.decode(from: &r))
        case .service:
            let name = try r.string()
            message = .service(name: name, state: try HealthState.decode(from: &r))
        case .answered: message = .answered
        case .gone: message = .gone(server: try r.string())
        case .found:
            let server = try r.string()
            let pid = try r.pid()
            guard let reach = Reach(rawValue: try r.byte()) else { throw .malformed(kind: raw) }
            message = .found(server: server, pid: pid, reach: reach)
        case .passedOver:
            let listener = try r.string()
            let pid = try r.pid()
            message = .passedOver(listener: listener, pid: pid, why: try Rejection.decode(from: &r))
        case .goAway: message = .goAway(server: try r.string())
        case .noWatch:
            let server = try r.string()
            message = .noWatch(server: server, interval: try r.integer())
        case .svid:
            let id = try r.string()
            message = .svid(id: id, rotated: try r.flag())
        case .tlsOnHealthPort: message = .tlsOnHealthPort
        case .invalidConfiguration: message = .invalidConfiguration(try r.string())
        case .noHealthService: message = .noHealthService(server: try r.string())
        }
        try r.end()
        return message
    }
}

extension GateFraming.Reader {
    mutating func pid() throws(GateFraming.Failure) -> Int32? {
        let value = try integer()
        guard value >= -1 && value <= Int64(Int32.max) else { throw .malformed(kind: kind) }
        return value < 0 ? nil : Int32(value)
    }
}

extension HealthState {
    fileprivate func encode(into w: inout GateFraming.Writer) {
        switch self {
        case .serving(let server):
            w.byte(0)
            w.string(server)
        case .notServing(let reason):
            w.byte(1)
            reason.encode(into: &w)
        }
    }

    fileprivate static func decode(from r: inout GateFraming.Reader) throws(GateFraming.Failure) -> HealthState {
        switch try r.byte() {
        case 0: return .serving(server: try r.string())
        case 1: return .notServing(try Reason.decode(from: &r))
        default: throw .malformed(kind: r.kind)
        }
    }
}

extension SupervisorMessage {
    private enum Kind: UInt8 {
        case configure = 1, drain
        case facts
    }

    public var frame: [UInt8] {
        let kind: Kind
        switch self {
        case .drain: kind = .drain
        case .configure: kind = .configure
        case .facts: kind = .facts
        }
        return GateFraming.frame(kind: kind.rawValue, payload)
    }

    /// The configuration's payload is larger than a frame carries: it would arrive cut.
    public var overflowsFrame: Bool { payload.bytes.count > GateFraming.maxPayload }

    private var payload: GateFraming.Writer {
        var w = GateFraming.Writer()
        switch self {
        case .drain:
            return w
        case .facts(let facts):
            facts.encode(into: &w)
            return w
        case .configure(let c):
            c.encode(into: &w)
            return w
        }
    }

    public static func decode(kind raw: UInt8, payload: [UInt8]) throws(GateFraming.Failure) -> SupervisorMessage? {
        guard let kind = Kind(rawValue: raw) else { return nil }
        var r = GateFraming.Reader(payload, kind: raw)
        switch kind {
        case .drain:
            try r.end()
            return .drain
        case .facts:
            let facts = try SupervisorFacts.decode(from: &r)
            try r.end()
            return .facts(facts)
        case .configure:
            let c = try GateConfiguration.decode(from: &r)
            return .configure(c)
        }
    }
}
