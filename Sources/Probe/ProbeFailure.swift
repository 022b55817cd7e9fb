import Addressing
import GateProtocol
import Client
import Flags
import SystemCalls
import Transport
import Wire

/// The probe's exit codes (the reference tool's, so exec probes keep their meaning).
public enum ProbeExit: Int32, Sendable {
    case serving = 0
    case invalidArguments = 1
    case connectionFailure = 2
    case rpcFailure = 3
    case unhealthy = 4
    case spiffeFailure = 20
}

/// Every way a probe can end other than SERVING: the exit code and the lines printed for it,
/// decided here and nowhere else.
public struct ProbeFailure: Error, Equatable {
    public let exit: ProbeExit
    public let lines: [String]

    /// Each line as printed: text from the server (a status message, GOAWAY debug data, a
    /// certificate's names) can hold control characters, which are escaped so that a failure is
    /// always one line and never drives the terminal.
    init(_ exit: ProbeExit, _ lines: String...) {
        self.exit = exit
        self.lines = lines.map(escapingControlCharacters)
    }

    /// A flag-parsing problem: Go's message, then the usage.
    static func flags(_ message: String?, usage: String) -> ProbeFailure {
        ProbeFailure(.invalidArguments, lines: (message.map { [$0] } ?? []) + [usage])
    }

    private init(_ exit: ProbeExit, lines: [String]) {
        self.exit = exit
        self.lines = lines
    }

    static func argument(_ text: String) -> ProbeFailure { ProbeFailure(.invalidArguments, "error: " + text) }

    static func tlsSetup(_ error: TLSSetupError) -> ProbeFailure {
        ProbeFailure(.invalidArguments, "failed to initialize tls credentials. error=\(error)")
    }

    static func spiffe(_ cause: String) -> ProbeFailure {
        ProbeFailure(.spiffeFailure, "failed to initialize tls credentials with spiffe. error=\(cause)")
    }

    static func spiffeCancelled(signal: Int32?) -> ProbeFailure {
        ProbeFailure(.spiffeFailure, lines: cancellation(signal) + spiffe("context canceled").lines)
    }

    static func connectTimeout(_ addr: String, _ timeout: GoDuration) -> ProbeFailure {
        ProbeFailure(.connectionFailure, "timeout: failed to connect service \(goQuote(addr)) within \(timeout)")
    }

    static func connectFailed(_ addr: String, _ cause: String) -> ProbeFailure {
        ProbeFailure(.connectionFailure, "error: failed to connect service at \(goQuote(addr)): \(cause)")
    }

    /// An -addr grpc-go cannot read as a dial target: Go's url package's words for the URL it
    /// read the address as.
    static func unparsable(_ addr: String, _ error: Target.ParseError) -> ProbeFailure {
        switch error {
        case .invalidEscape(let url, let escape):
            return connectFailed(addr, "parse \(goQuote(url)): invalid URL escape \(goQuote(escape))")
        case .controlCharacter(let url):
            return connectFailed(addr, "parse \(goQuote(url)): net/url: invalid control character in URL")
        default:
            return connectFailed(addr, error.description)
        }
    }

    static func rpc(_ status: GRPCStatus, timeout: GoDuration) -> ProbeFailure {
        switch status.code {
        case .unimplemented where status.fromServer:
            // Only the server's own UNIMPLEMENTED means that: an HTTP 404 or a response encoding
            // we cannot read maps to the same code, and is reported as what it is.
            return ProbeFailure(.rpcFailure, "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): \(status.message)")
        case .deadlineExceeded:
            return ProbeFailure(.rpcFailure, "timeout: health rpc did not complete within \(timeout)")
        default:
            return ProbeFailure(.rpcFailure, "error: health rpc failed: \(status)")
        }
    }

    static func unhealthy(_ status: ServingStatus) -> ProbeFailure {
        ProbeFailure(.unhealthy, "service unhealthy (responded with \(goQuote(status.description)))")
    }

    /// A health verdict in the reference's words, whoever reached it (this probe's own Check,
    /// or grpc-init's health agent); nil for SERVING. `server` names the server in a failure
    /// to connect.
    init?(_ verdict: Verdict, server: String, timeout: GoDuration) {
        switch verdict {
        case .serving: return nil
        case .notServing(let status): self = ProbeFailure.unhealthy(status)
        case .draining: self = ProbeFailure.unhealthy(.notServing)
        case .unreachable(let reason): self = ProbeFailure.connectFailed(server, reason.description)
        case .rpcFailed(let status): self = ProbeFailure.rpc(status, timeout: timeout)
        }
    }

    /// Context cancellation, as the reference reports it in each phase, after the line that
    /// names the signal (when it is known).
    static func cancelledWhileConnecting(_ addr: String, signal: Int32?) -> ProbeFailure {
        ProbeFailure(.connectionFailure, lines: cancellation(signal) + connectFailed(addr, "context canceled").lines)
    }

    static func cancelledDuringRPC(signal: Int32?) -> ProbeFailure {
        ProbeFailure(.rpcFailure, lines: cancellation(signal) + ["error: health rpc failed: rpc error: code = Canceled desc = context canceled"])
    }

    static func cancellation(_ signal: Int32?) -> [String] {
        signal.map { ["cancellation received (signal: \(Signals.goDescription($0)))"] } ?? []
    }

    /// A connection that could not be made, in the reference's two forms (a timeout, or
    /// `failed to connect service at ADDR: CAUSE`), with the cause as precise as we know it.
    static func dial(_ failure: DialFailure, options: ProbeOptions) -> ProbeFailure {
        let addr = options.addr
        switch failure {
        case .resolve(let cause):
            return connectFailed(addr, cause.description)
        case .connect(.tls(let cause)):
            return connectFailed(addr, cause.described(hint: "is the server speaking plaintext? try without -tls"))
        case .connect(let cause):
            return connectFailed(addr, cause.description)
        case .interrupted(.deadline):
            return connectTimeout(addr, options.connectTimeout)
        case .interrupted(.signal(let signal)):
            return cancelledWhileConnecting(addr, signal: signal)
        case .certificateRejected(let failure):
            let alert = failure.map { " (\($0))" } ?? ""
            if options.tls.clientCert.isEmpty {
                return connectFailed(addr, "tls: the server requires a client certificate and closed the connection\(alert); "
                                         + "none was given (-tls-client-cert, -tls-client-key)")
            }
            return connectFailed(addr, "tls: the server asked for a client certificate and closed the connection\(alert) "
                                     + "after receiving \(options.tls.clientCert): it rejected it")
        case .handshake(let handshake):
            return connectFailed(addr, describe(handshake, tls: options.tls.tls))
        }
    }

    /// Names what the server did instead of completing the HTTP/2 handshake, and the flag that
    /// would help.
    static func describe(_ failure: HandshakeFailure, tls: Bool) -> String {
        switch failure.sign {
        case .answeredTLS: return failure.account + " (use -tls)"
        case .closedBeforeHandshake where !tls: return failure.account + "; a TLS server does this to plaintext clients (try -tls)"
        default: return failure.account
        }
    }
}
