import Flags
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

    static func connectTimeout(_ addr: String, _ timeout: GoDuration) -> ProbeFailure {
        ProbeFailure(.connectionFailure, "timeout: failed to connect service \(goQuote(addr)) within \(timeout)")
    }

    static func connectFailed(_ addr: String, _ cause: String) -> ProbeFailure {
        ProbeFailure(.connectionFailure, "error: failed to connect service at \(goQuote(addr)): \(cause)")
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

    static func unhealthy(_ status: Health.ServingStatus) -> ProbeFailure {
        ProbeFailure(.unhealthy, "service unhealthy (responded with \(goQuote(status.description)))")
    }

    /// Context cancellation, as the reference reports it in each phase.
    static func cancelledWhileConnecting(_ addr: String) -> ProbeFailure { connectFailed(addr, "context canceled") }
    static let cancelledDuringRPC = ProbeFailure(.rpcFailure, "error: health rpc failed: rpc error: code = Canceled desc = context canceled")
}
