import Client
import GateProtocol
import Wire

/// What a probe of the server's readiness (the local probe socket, `/readyz`) is answered: at
/// once from the health model when it is not ready, with why; by a fresh Check of the server when
/// it is, so that a hung server fails as it would an exec probe; a service the model does not
/// watch is asked directly.
enum HealthQuestion {
    case now(LocalAnswer.Outcome)
    /// A Check of this service is needed (on the agent's channel).
    case check(String)

    static func ask(_ model: HealthModel, service: String?, channel: Channel?) -> HealthQuestion {
        if model.draining { return .now(.notServing("NOT_SERVING")) }
        let watched = service.map { model.services.contains($0) } ?? true
        if watched, let why = model.reason(service: service) { return .now(outcome(of: why)) }
        guard channel != nil else { return .now(.noConnection(model.reason() ?? .starting)) }
        return .check(service ?? model.services[0])
    }

    /// A reason as the probe's exit codes see it: a status the server answered (4), a call that
    /// failed (3), or no connection (2).
    static func outcome(of reason: Reason) -> LocalAnswer.Outcome {
        switch reason {
        case .service(_, let why): return outcome(of: why)
        case .status(let name): return .notServing(name)
        case .draining: return .notServing("NOT_SERVING")
        case .watchEnded, .callFailed, .undecodable: return .rpcFailed(code: Int32(GRPCStatusCode.unavailable.rawValue), message: reason.description)
        case .starting, .noListener, .noProc, .noGRPCServer, .unreachable, .setup, .awaitingAnswer: return .noConnection(reason)
        }
    }

    /// A finished Check as an outcome.
    static func outcome(of status: GRPCStatus, message: [UInt8]?) -> LocalAnswer.Outcome {
        if status.code == .ok {
            guard let message, let serving = try? Health.decodeResponse(message) else {
                return .rpcFailed(code: Int32(GRPCStatusCode.internalError.rawValue), message: "a health response that does not decode")
            }
            return serving == .serving ? .serving : .notServing(serving.description)
        }
        return .rpcFailed(code: Int32(truncatingIfNeeded: status.rawCode), message: status.message)
    }
}
