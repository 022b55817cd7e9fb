import Flags
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// grpc_health_probe: parse flags, connect, call grpc.health.v1.Health/Check once, and exit
/// with the reference tool's code and message.
public enum ProbeRunner {
    /// Runs the probe with `arguments` (without argv[0]) and returns the exit status.
    public static func main(_ arguments: [String]) -> Int32 {
        // A closed stderr (or a peer gone mid-write) must not kill the probe: its exit code is its
        // answer. SIGPIPE is blocked, so such writes just fail with EPIPE (blocking costs nothing
        // new on this path; signal(2) here cost a plaintext probe ~0.25 MiB of code pages).
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        sigprocmask(SIG_BLOCK, &pipeSignal, nil)
        let options: ProbeOptions
        do {
            switch try ProbeOptions.parse(arguments) {
            case .version:
                Output.line("grpc_health_probe (grpc-init) \(BuildInfo.version)", to: STDOUT_FILENO)
                return 0
            case .run(let o): options = o
            }
        } catch {
            return report(error)
        }
        if options.verbose { options.verboseLines.forEach { Output.line($0) } }
        // SIGINT and SIGTERM cancel the probe: they arrive through the same poll as the socket.
        let signals = try? SignalFD(signals: [SIGINT, SIGTERM])
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
struct Probe {
    let options: ProbeOptions
    let signals: SignalFD?

    func run() throws(ProbeFailure) -> Health.ServingStatus {
        // OpenSSL is touched only here, when -tls or -spiffe asks for it.
        var tls: TLSContext? = nil
        if options.spiffe {
            #if TLS
            let context = try fetchX509Context()
            if options.verbose { Output.line("SPIFFE Verifiable Identity Document (SVID): \(goQuote(context.svids[0].spiffeID))") }
            var configuration = TLSConfiguration()
            configuration.spiffe = context.credentials
            do { tls = try TLSContext(configuration) } catch { throw ProbeFailure.spiffe(error.description) }
            #else
            throw ProbeFailure.spiffe("this grpc-init was built without TLS (the TLS package trait)")
            #endif
        } else if options.tls {
            #if TLS
            do { tls = try TLSContext(options.tlsConfiguration) } catch { throw ProbeFailure.tlsSetup(error) }
            #else
            throw ProbeFailure.argument("-tls is not available: this grpc-init was built without TLS (the TLS package trait)")
            #endif
        }
        if options.verbose { Output.line("establishing connection") }
        let connectStart = MonotonicClock.now()
        // The Check goes out right behind the connection preface (RFC 9113 §3.4 allows it), saving
        // a round trip; the connection still counts as established only once SETTINGS arrive.
        var pending: GRPCCall? = nil
        let session = try connect(deadline: MonotonicClock.deadline(after: options.connectTimeout.nanoseconds), tls: tls) { client in
            pending = client.startCall(
                path: Health.checkPath,
                metadata: options.rpcHeaders.map { HeaderField($0.0, $0.1) },
                timeoutNanoseconds: options.rpcTimeout.nanoseconds,
                compress: options.gzip,
                request: Health.request(service: options.service))
        }
        let call = pending!
        let connectTook = GoDuration(nanoseconds: MonotonicClock.now() - connectStart)
        if options.verbose { Output.line("connection established (took \(connectTook))") }

        let rpcStart = MonotonicClock.now()
        let deadline = MonotonicClock.deadline(after: options.rpcTimeout.nanoseconds)
        switch session.run(until: { call.status != nil }, deadline: deadline, signals: signals) {
        case .done, .closed:
            break
        case .timedOut:
            throw ProbeFailure.rpc(GRPCStatus(.deadlineExceeded), timeout: options.rpcTimeout)
        case .cancelled(let signo):
            reportCancellation(signo)
            throw ProbeFailure.cancelledDuringRPC
        }
        let status = call.status ?? GRPCStatus(.unavailable, "connection closed before the call completed")
        guard status.code == .ok else { throw ProbeFailure.rpc(status, timeout: options.rpcTimeout) }
        guard let message = call.nextMessage() else {
            throw ProbeFailure.rpc(GRPCStatus(.internalError, "server sent no response message"), timeout: options.rpcTimeout)
        }
        let serving: Health.ServingStatus
        do { serving = try Health.decodeResponse(message) } catch {
            throw ProbeFailure.rpc(GRPCStatus(.internalError, "grpc: failed to unmarshal the received message: \(error)"), timeout: options.rpcTimeout)
        }
        let rpcTook = GoDuration(nanoseconds: MonotonicClock.now() - rpcStart)
        guard serving == .serving else { throw ProbeFailure.unhealthy(serving) }
        if options.verbose { Output.line("time elapsed: connect=\(connectTook) rpc=\(rpcTook)") }
        return serving
    }

    /// Resolves, connects (each address in turn) and completes the HTTP/2 handshake: the
    /// connection counts as established once the server's SETTINGS arrive.
    private func connect(deadline: Int64, tls: TLSContext?, prepare: (GRPCClient) -> Void) throws(ProbeFailure) -> ClientSession {
        let addr = options.addr
        let target: Target
        do { target = try Target.parse(addr) } catch { throw ProbeFailure.connectFailed(addr, error.description) }
        let addresses: [SocketAddress]
        do { addresses = try Resolver().resolve(target, deadline: deadline, cancelFD: signals?.fd) } catch {
            if error.cancelled {
                cancelled()
                throw ProbeFailure.cancelledWhileConnecting(addr)
            }
            if MonotonicClock.now() >= deadline { throw ProbeFailure.connectTimeout(addr, options.connectTimeout) }
            throw ProbeFailure.connectFailed(addr, error.description)
        }
        var lastFailure = "no addresses"
        for address in addresses {
            let socket: Socket
            do {
                socket = try Socket.connect(to: address, deadline: deadline, cancelFD: signals?.fd)
            } catch {
                // A refused address is not the end: the next one may answer.
                if case .failed(let text) = error {
                    lastFailure = text
                    continue
                }
                throw connectFailure(error)
            }
            var stream: ByteStream = socket
            var tlsConnection: TLSConnection? = nil
            #if TLS
            if let tls {
                tlsConnection = try handshake(socket, tls, target: target, deadline: deadline)
                stream = tlsConnection!
            }
            #endif
            let client = GRPCClient(GRPCClient.Settings(
                authority: target.authority, scheme: tls == nil ? "http" : "https",
                userAgent: "\(options.userAgent) grpc-init/\(BuildInfo.version)"))
            prepare(client)
            let session = ClientSession(stream: stream, client: client)
            switch session.run(until: { client.isReady || client.connectionFailure != nil }, deadline: deadline, signals: signals) {
            case .done, .closed:
                if client.isReady { return session }
                if let tlsConnection, let reason = tlsConnection.explainRejection(session.transportFailure, clientCertificate: options.tlsClientCert) {
                    throw ProbeFailure.connectFailed(addr, reason)
                }
                throw ProbeFailure.connectFailed(addr, handshakeFailure(session, address))
            case .timedOut:
                throw ProbeFailure.connectTimeout(addr, options.connectTimeout)
            case .cancelled(let signo):
                reportCancellation(signo)
                throw ProbeFailure.cancelledWhileConnecting(addr)
            }
        }
        throw ProbeFailure.connectFailed(addr, lastFailure)
    }

    #if TLS
    private func handshake(_ socket: Socket, _ tls: TLSContext, target: Target, deadline: Int64) throws(ProbeFailure) -> TLSConnection {
        let host: String
        if case .tcp(let h, _) = target { host = h } else { host = "localhost" }
        do {
            let connection = try TLSConnection.handshake(over: socket, context: tls, host: host, deadline: deadline, cancelFD: signals?.fd)
            if options.verbose {
                let verified = options.tlsNoVerify ? "server certificate NOT verified (-tls-no-verify)" : "server certificate verified"
                Output.line("tls: \(connection.version) \(connection.cipher), ALPN \(connection.alpn ?? "none"), \(verified)")
            }
            return connection
        } catch {
            throw connectFailure(error)
        }
    }
    #endif

    /// What a failure while connecting (TCP or TLS) ends the probe with.
    private func connectFailure(_ error: ConnectFailure) -> ProbeFailure {
        switch error {
        case .failed(let cause): return ProbeFailure.connectFailed(options.addr, cause)
        case .timedOut: return ProbeFailure.connectTimeout(options.addr, options.connectTimeout)
        case .cancelled:
            cancelled()
            return ProbeFailure.cancelledWhileConnecting(options.addr)
        }
    }

    /// A signal cancelled a wait that does not read the signalfd itself: says which.
    func cancelled() {
        if let info = signals?.next() { reportCancellation(Int32(info.ssi_signo)) }
    }

    func reportCancellation(_ signo: Int32) {
        Output.line("cancellation received (signal: \(Signals.goDescription(signo)))")
    }

    /// A protocol that greets in text (SSH, SMTP, Redis errors, ...): the first line is
    /// printable ASCII. An HTTP/2 server's first bytes are a binary frame header.
    static func looksLikeText(_ bytes: [UInt8]) -> Bool {
        let line = bytes.prefix { $0 != 0x0D && $0 != 0x0A }
        return line.count >= 4 && line.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// Whether 9 bytes could start an HTTP/2 frame: a known type, a length within the default
    /// maximum, the reserved bit clear.
    static func plausibleFrameHeader(_ bytes: [UInt8]) -> Bool {
        let length = Int(bytes[0]) << 16 | Int(bytes[1]) << 8 | Int(bytes[2])
        return bytes[3] <= FrameType.continuation.rawValue && length <= 16_384 && bytes[5] & 0x80 == 0
    }

    /// Names what the server did instead of completing the HTTP/2 handshake.
    private func handshakeFailure(_ session: ClientSession, _ address: SocketAddress) -> String {
        if let failure = session.transportFailure, failure.hasPrefix("remote error: ") || failure.hasPrefix("tls: ") {
            return failure
        }
        let first = session.firstBytes
        if first.count >= 3 && (first[0] == 0x15 || first[0] == 0x16) && first[1] == 0x03 {
            return "server at \(address) answered with TLS; it expects a TLS connection (use -tls)"
        }
        if first.starts(with: Array("HTTP/".utf8)) || Probe.looksLikeText(first) {
            let line = String(decoding: first.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
            return "server at \(address) does not speak HTTP/2 (it answered \(goQuote(line)))"
        }
        if first.count >= 9 && !Probe.plausibleFrameHeader(first) {
            let hex = first.prefix(16).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
            return "server at \(address) does not speak HTTP/2 (its first bytes: \(hex))"
        }
        let reason = session.transportFailure ?? session.client.connectionFailure?.message ?? "connection closed"
        if first.isEmpty {
            // What a TLS-only server does to a plaintext client: the usual cause of this symptom.
            let hint = options.tls ? "" : "; a TLS server does this to plaintext clients (try -tls)"
            return "server at \(address) closed the connection before the HTTP/2 handshake (\(reason))\(hint)"
        }
        return "HTTP/2 handshake with \(address) failed: \(reason)"
    }
}
