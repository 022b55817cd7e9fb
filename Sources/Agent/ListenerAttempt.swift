import Addressing
import Client
import GateProtocol
import Glibc
import SystemCalls
import Wire

/// Whether one listener is a gRPC server the agent can check: one Check over a connection of
/// its own (any status the server sends counts), plaintext first unless the flags ask for TLS or
/// SPIFFE; a listener that does not speak plaintext HTTP/2 is tried once more with TLS. A source
/// of the reactor: many listeners are tried at once, and a silent one delays no other.
final class ListenerAttempt: EventSource {
    enum Verdict {
        /// It answered the Health service (any status), over this.
        case grpc(Found)
        /// Not a gRPC server, or one that refuses us whatever we retry: remembered.
        case rejected(Rejection)
        /// Not now (the socket went away, a timeout): tried again on the next scan.
        case unavailable(String)
    }

    let listener: Listener
    let owner: pid_t?
    private(set) var verdict: Verdict?
    private let plan: AgentPlan
    private let credentials: Credentials

    /// How one try ended.
    private enum Outcome {
        case answered
        case failed(DialFailure)
        case noAnswer(String)
    }

    private var security: Security
    private var reach: Reach
    /// Plaintext first, then TLS: the plaintext try's outcome, once it failed.
    private var plaintextOutcome: Outcome?
    private var check: DialedCall?
    /// Once connected: the Check's answer is due by then.
    private var answerBy: Int64?

    init(_ listener: Listener, owner: pid_t?, plan: AgentPlan, credentials: Credentials, security: Security, reach: Reach) {
        self.listener = listener
        self.owner = owner
        self.plan = plan
        self.credentials = credentials
        self.security = security
        self.reach = reach
        start()
    }

    private func start() {
        answerBy = nil
        check = DialedCall(listener.target, security: security, userAgent: plan.userAgent, authority: plan.authority,
                           deadline: Deadline.after(plan.connectTimeout)) { [plan] client in
            client.startCall(path: Health.checkPath, metadata: plan.metadata, timeoutNanoseconds: plan.rpcTimeout, request: plan.request)
        }
        progress(now: MonotonicClock.now())
    }

    private func progress(now: Int64) {
        guard let check else { return }
        if let failure = check.dialFailure { return tried(.failed(failure)) }
        guard let connection = check.connection, let call = check.call else { return }
        let answerBy = self.answerBy ?? MonotonicClock.deadline(after: plan.rpcTimeout)
        self.answerBy = answerBy
        if let status = call.status {
            tried(status.fromServer || !call.messages.isEmpty ? .answered : .noAnswer(status.description))
        } else if connection.isClosed {
            tried(.noAnswer("connection closed"))
        } else if now >= answerBy {
            // An HTTP/2 server that took the Check and is slow to answer it is the gRPC server
            // with a slow health service (what a liveness probe is for), not another protocol.
            tried(.answered)
        }
    }

    private func found() -> Found {
        Found(target: listener.target, security: security, reach: reach, name: listener.description, discovered: true)
    }

    /// One try ended: the verdict, or the TLS try after a plaintext one that was not HTTP/2.
    private func tried(_ outcome: Outcome) {
        check = nil
        guard case .plaintext = reach, plaintextOutcome == nil else {
            // The configured security, or the TLS fallback: this is the last try.
            if case .failed(.certificateRejected) = outcome, plaintextOutcome != nil {
                verdict = .rejected(.certificateRequired(foundByTLS: true))
            } else if case .answered = outcome {
                verdict = .grpc(found())
            } else if let plaintextOutcome {
                verdict = judge(plaintextOutcome)
            } else {
                verdict = judge(outcome)
            }
            return
        }
        switch outcome {
        case .answered:
            verdict = .grpc(found())
        case .failed(.connect), .failed(.resolve), .failed(.interrupted):
            verdict = judge(outcome)
        case .failed, .noAnswer:
            plaintextOutcome = outcome
            switch credentials.fallbackTLS() {
            case .success(let (tls, tlsReach)):
                security = tls
                reach = tlsReach
                start()
            case .failure(let why):
                verdict = .rejected(.other(why.description))
            }
        }
    }

    private func judge(_ outcome: Outcome) -> Verdict {
        switch outcome {
        case .answered: return .rejected(.other("no answer"))
        case .noAnswer(let why): return .rejected(.other(why))
        case .failed(let failure):
            switch failure {
            case .connect, .resolve: return .unavailable(failure.description)
            case .interrupted: return .unavailable("no HTTP/2 answer within \(plan.configuration.connectTimeout)")
            case .handshake(let handshake): return .rejected(.other(handshake.account))
            case .certificateRejected:
                // SPIFFE offers the SVID: refused, whatever the flags of a certificate say.
                let offered = !plan.configuration.tls.clientCert.isEmpty || plan.configuration.spiffe
                return .rejected(offered ? .certificateRefused : .certificateRequired(foundByTLS: false))
            }
        }
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) { check?.descriptors(into: &set) }

    var wakeAt: Int64? {
        guard let check else { return nil }
        return min(check.wakeAt ?? .max, answerBy ?? .max)
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        check?.turn(polled, now: now)
        progress(now: now)
    }
}
