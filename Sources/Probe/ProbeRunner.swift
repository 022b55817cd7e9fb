import GateProtocol
import Addressing
import Client
import Flags
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// grpc_health_probe: parse flags, connect, call grpc.health.v1.Health/Check once, and exit
/// with the reference tool's code and message.
public enum ProbeRunner {
    /// Runs the probe with `arguments` (without argv[0]; `rawArguments`, the same as bytes) and
    /// returns the exit status.
    public static func main(_ arguments: [String], rawArguments: [[UInt8]]? = nil) -> Int32 {
        // A closed stderr (or a peer gone mid-write) must not kill the probe: its exit code is its
        // answer. SIGPIPE is blocked, so such writes just fail with EPIPE (blocking runs nothing
        // the path does not run anyway; signal(2) here would fault in code pages of its own).
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        sigprocmask(SIG_BLOCK, &pipeSignal, nil)
        let options: ProbeOptions
        do {
            switch try ProbeOptions.parse(arguments, rawArguments: rawArguments) {
            case .version(let verbose):
                BuildInfo.versionLines("grpc_health_probe (grpc-init)", verbose: verbose).forEach { Output.line($0, to: STDOUT_FILENO) }
                return 0
            case .run(let o): options = o
            }
        } catch {
            return report(error)
        }
        // SIGINT and SIGTERM cancel the probe: they arrive through the same poll as the socket.
        let signals = try? SignalFD(signals: [SIGINT, SIGTERM])
        // With no -addr, inside a grpc-init container: grpc-init's health agent is asked.
        var agent: Socket? = nil
        if options.addr.isEmpty {
            let reach = AgentProbe.connect(timeout: options.connectTimeout, signals: signals)
            if case .none = reach { return report(ProbeOptions.addressMissing) }
            if let failure = options.deferredFailure { return report(failure) }
            switch reach {
            case .agent(let connected): agent = connected
            case .failed(let failure): return report(failure)
            case .none: return report(ProbeOptions.addressMissing)
            }
        }
        if options.verbose { options.verboseLines.forEach { Output.writeAll(STDERR_FILENO, $0 + [0x0A]) } }
        if let agent { return AgentProbe.run(options, over: agent, signals: signals) }
        do {
            let status = try Probe(options: options, signals: signals).run()
            Output.line("status: \(status)")
            return ProbeExit.serving.rawValue
        } catch {
            return report(error)
        }
    }

    private static func report(_ failure: ProbeFailure) -> Int32 {
        failure.lines.forEach { Output.line($0) }
        return failure.exit.rawValue
    }
}

/// One probe's connect-then-check flow.
public struct Probe {
    public let options: ProbeOptions
    public let signals: SignalFD?

    public init(options: ProbeOptions, signals: SignalFD?) {
        self.options = options
        self.signals = signals
    }

    func run() throws(ProbeFailure) -> Health.ServingStatus {
        let security = try makeSecurity()
        let addr = options.addr
        // As the reference: the line comes first, and an address that cannot be parsed fails the
        // dial that follows it.
        if options.verbose { Output.line("establishing connection") }
        let resolved: (target: Target, authority: String)
        do { resolved = try Target.resolve(addr) } catch { throw ProbeFailure.unparsable(addr, error) }
        let connectStart = MonotonicClock.now()
        // The Check goes out right behind the connection preface (RFC 9113 §3.4 allows it), saving
        // a round trip; the connection still counts as established only once SETTINGS arrive.
        var pending: GRPCCall? = nil
        let connection: Connection
        do {
            connection = try dial(resolved.target, security: security, userAgent: options.sentUserAgent,
                                  authority: options.authority ?? resolved.authority,
                                  by: Deadline.after(options.connectTimeout.nanoseconds, cancellation: signals)) { client in
                // A service name that is not UTF-8 cannot be marshaled: the call fails once the
                // connection is up, as grpc-go's does.
                guard String(validating: options.service, as: UTF8.self) != nil else { return }
                pending = client.startCall(
                    path: Health.checkPath,
                    metadata: options.metadata,
                    timeoutNanoseconds: options.rpcTimeout.nanoseconds,
                    compress: options.gzip,
                    request: Health.request(service: options.service))
            }
        } catch {
            throw ProbeFailure.dial(error, options: options)
        }
        let connectTook = GoDuration(nanoseconds: MonotonicClock.now() - connectStart)
        if options.verbose { Output.line("connection established (took \(connectTook))") }
        guard let call = pending else { throw ProbeFailure.rpc(Health.invalidUTF8, timeout: options.rpcTimeout) }

        let rpcStart = MonotonicClock.now()
        let rpcDeadline = Deadline.after(options.rpcTimeout.nanoseconds, cancellation: signals)
        switch connection.run(until: { call.status != nil }, by: rpcDeadline) {
        case .done, .closed:
            // The Check went out behind the preface, so its answer may already be here; it still
            // counts only within -rpc-timeout of the connection, as grpc-go's call counts from
            // its start (an -rpc-timeout shorter than a round trip never succeeds).
            if rpcDeadline.hasPassed { throw ProbeFailure.rpc(GRPCStatus(.deadlineExceeded), timeout: options.rpcTimeout) }
        case .interrupted(.deadline):
            throw ProbeFailure.rpc(GRPCStatus(.deadlineExceeded), timeout: options.rpcTimeout)
        case .interrupted(.signal(let signo)):
            throw ProbeFailure.cancelledDuringRPC(signal: signo)
        }
        let status = call.status ?? GRPCStatus(.unavailable, "connection closed before the call completed")
        let rpcTook = GoDuration(nanoseconds: MonotonicClock.now() - rpcStart)
        if let failure = ProbeFailure(Verdict(checkStatus: status, message: call.nextMessage()), server: options.addr, timeout: options.rpcTimeout) {
            throw failure
        }
        if options.verbose { Output.line("time elapsed: connect=\(connectTook) rpc=\(rpcTook)") }
        return .serving
    }

    /// How to secure the connection, as -tls or -spiffe ask: OpenSSL is touched only here, and
    /// only then. With -v, it prints the SVID fetched.
    public func makeSecurity() throws(ProbeFailure) -> Security {
        var security = Security.plaintext
        if options.spiffe {
            #if TLS
            let context = try fetchX509Context()
            if options.verbose { Output.line("SPIFFE Verifiable Identity Document (SVID): \(goQuote(context.svids[0].spiffeID))") }
            var configuration = TLSConfiguration()
            configuration.spiffe = context.credentials
            do { security = .tls(try TLSContext(configuration), onHandshake: reportHandshake) } catch { throw ProbeFailure.spiffe(error.description) }
            #else
            throw ProbeFailure.spiffe("this grpc-init was built without TLS (the TLS package trait)")
            #endif
        } else if options.tls.tls {
            #if TLS
            do { security = .tls(try TLSContext(options.tls.configuration), onHandshake: reportHandshake) } catch { throw ProbeFailure.tlsSetup(error) }
            #else
            throw ProbeFailure.argument("-tls is not available: this grpc-init was built without TLS (the TLS package trait)")
            #endif
        }
        return security
    }

    #if TLS
    /// -v: what the handshake settled.
    private func reportHandshake(_ connection: TLSConnection) {
        guard options.verbose else { return }
        let verified = options.tls.noVerify ? "server certificate NOT verified (-tls-no-verify)" : "server certificate verified"
        Output.line("tls: \(connection.version) \(connection.cipher), ALPN \(connection.alpn ?? "none"), \(verified)")
    }
    #endif
}
