import Addressing
import Client
import Flags
import Glibc
import HPACK
import Probe
import SPIFFE
import SystemCalls
import Transport
import Wire

/// The health agent: a process of its own, started by the supervisor, that finds the server
/// (or is told where it is), keeps one connection to it, watches its health and reports each
/// change to the supervisor, one `HealthReport` line on stdout. It parses every byte a peer
/// sends, so it runs outside PID 1: a crash here costs a restart of the agent, not the container.
public enum AgentMain {
    static let flagSet = FlagSet([
        .init("interval", .duration, default: .duration(GoDuration(nanoseconds: 250_000_000)), usage: "a Check this often without Watch"),
        .init("health-fd", .string, usage: "serve the health endpoint on this listening socket, bound by the supervisor"),
    ])

    /// The arguments (after argv[0]), as the supervisor writes them: the agent's own flags, then
    /// `--` and grpc_health_probe flags (-addr only when the target is given). The supervisor
    /// sends "drain" lines on stdin.
    public static func main(_ arguments: [String]) -> Int32 {
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        sigprocmask(SIG_BLOCK, &pipeSignal, nil)
        let reporter = Reporter()
        guard let own = try? flagSet.parse(arguments), own.duration("interval").nanoseconds > 0 else {
            reporter.send(.event("health agent: invalid arguments"))
            return 1
        }
        let options: ProbeOptions
        do {
            guard case .run(let parsed) = try ProbeOptions.parse(own.remaining, requireAddress: false) else { return 1 }
            options = parsed
        } catch {
            reporter.send(.event("health agent: invalid arguments: \(error.lines.first ?? "")"))
            return 1
        }
        // SIGTERM (or the supervisor's death, which is SIGKILL) ends the agent; either cuts any wait.
        let signals = try? SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
        var endpoint: HealthEndpoint? = nil
        // The supervisor binds -health-addr and hands the socket down, so that the port stays
        // bound while an agent restarts.
        if let fd = Int32(own.string("health-fd")) {
            endpoint = HealthEndpoint(listener: Socket.adopt(listening: fd), metadata: options.metadata, control: STDIN_FILENO,
                                      reason: { reporter.lastReason }, info: { reporter.send(.info($0)) })
        }
        Agent(options: options, interval: own.duration("interval"), signals: signals, reporter: reporter, endpoint: endpoint).run()
        return 0
    }
}

/// Writes reports to the supervisor; a state (serving or not, and why) only when it changed.
final class Reporter {
    private var lastState: HealthReport?
    /// Why the server is not SERVING, as last reported (for the health endpoint's answers).
    private(set) var lastReason = "starting"

    func send(_ report: HealthReport) {
        switch report {
        case .serving, .notServing:
            if case .notServing(let why) = report { lastReason = why }
            if report == lastState { return }
            lastState = report
        case .event, .info:
            break
        }
        Output.writeAll(STDOUT_FILENO, Array((report.line + "\n").utf8))
    }
}

/// A server to watch: where, how it is reached, and what to call it in reports.
struct Found {
    let target: Target
    let security: Security
    let name: String
    /// Found by discovery (not named by -ready-addr): when it goes away, look again.
    let discovered: Bool
}

final class Agent {
    let options: ProbeOptions
    let interval: GoDuration
    let signals: SignalFD?
    let reporter: Reporter
    let endpoint: HealthEndpoint?
    private let supervisor = getppid()
    private let me = getpid()
    /// Listeners that are not gRPC servers (or not ones we can talk to), and why: not tried again.
    private var rejected: [Listener: String] = [:]
    private static let maxRejected = 1024
    private var cancelled = false

    /// Pauses between rescans while nothing is found, and between redials of a lost server.
    static let rescans = Backoff(first: 10_000_000, maximum: 1_000_000_000)
    static let redials = Backoff(first: 100_000_000, maximum: 5_000_000_000)

    init(options: ProbeOptions, interval: GoDuration, signals: SignalFD?, reporter: Reporter, endpoint: HealthEndpoint?) {
        self.endpoint = endpoint
        self.options = options
        self.interval = interval
        self.signals = signals
        self.reporter = reporter
        metadata = options.metadata
        request = Health.request(service: options.service)
    }

    let metadata: [HeaderField]
    let request: [UInt8]

    func run() {
        var redial = Agent.redials
        var next: Found? = nil
        while !cancelled {
            guard let found = next ?? locate() else { return }
            next = nil
            let started = MonotonicClock.now()
            let goingAway = watch(found)
            if cancelled { return }
            if goingAway {
                // The server asked for a new connection: the same server, at once, with fresh
                // credentials; no rediscovery and no report in between.
                if let security = try? makeSecurity(listenerSecurity: found.security) {
                    next = Found(target: found.target, security: security, name: found.name, discovered: found.discovered)
                    continue
                }
            }
            // A server that stayed up a while gets the first pause again, not the longest.
            if MonotonicClock.now() - started > 10 * redial.maximum { redial.reset() }
            if !pause(redial.next()) { return }
        }
    }

    /// Waits `nanoseconds`, serving the health endpoint meanwhile, or less when a signal
    /// arrives (then false).
    private func pause(_ nanoseconds: Int64) -> Bool {
        let deadline = Deadline.after(nanoseconds, cancellation: signals)
        while !deadline.hasPassed {
            var fds = [pollfd(fd: deadline.cancelFD ?? -1, events: Int16(POLLIN), revents: 0)]
            if let endpoint { fds += endpoint.pollDescriptors() }
            let until = min(deadline.instant, endpoint?.wakeAt ?? Int64.max)
            let n = poll(&fds, nfds_t(fds.count), MonotonicClock.pollTimeout(until: until))
            if n > 0 && fds[0].revents != 0, signals?.next() != nil {
                cancelled = true
                return false
            }
            endpoint?.serve(fds[1...])
        }
        return true
    }

    // MARK: Finding the server

    /// The server named by -addr, or the first listener of the process tree that answers the
    /// Health service. Nil once a signal ends the agent.
    private func locate() -> Found? {
        if !options.addr.isEmpty {
            var retry = Agent.redials
            while true {
                let target: Target
                do { target = try Target.parse(options.addr) } catch {
                    reporter.send(.notServing(error.description))
                    return nil
                }
                do {
                    return Found(target: target, security: try makeSecurity(), name: options.addr, discovered: false)
                } catch {
                    if cancelled { return nil }
                    reporter.send(.notServing(error.reason))
                }
                if !pause(retry.next()) { return nil }
            }
        }
        var rescan = Agent.rescans
        var lastCount = -1
        while true {
            let scan = Discovery.scan(root: supervisor, excluding: me)
            if scan.procMissing {
                reporter.send(.notServing("cannot find the server's port without /proc (give -ready-addr)"))
            }
            var reasons: [String] = []
            for listener in scan.listeners {
                if let why = rejected[listener] {
                    reasons.append("\(listener): \(why)")
                    continue
                }
                let owner = scan.owners[listener.inode].map { " (pid \($0))" } ?? ""
                switch classify(listener) {
                case .grpc(let found, let how):
                    reporter.send(.event("health: found the gRPC server at \(listener)\(owner), \(how)"))
                    return found
                case .rejected(let why):
                    if rejected.count < Agent.maxRejected { rejected[listener] = why }
                    reporter.send(.info("health: \(listener)\(owner) is not a gRPC server we can check: \(why)"))
                    reasons.append("\(listener): \(why)")
                case .unavailable(let why):
                    reasons.append("\(listener): \(why)")
                case .cancelled:
                    return nil
                }
            }
            if scan.listeners.isEmpty {
                reporter.send(.notServing("no listening socket found yet"))
            } else {
                reporter.send(.notServing("no gRPC server among the listening sockets: " + reasons.joined(separator: "; ")))
            }
            // A change in what listens starts the pauses over: the server is coming up.
            if scan.listeners.count != lastCount { rescan.reset() }
            lastCount = scan.listeners.count
            if !pause(rescan.next()) { return nil }
        }
    }

    private enum Verdict {
        /// The listener answered the Health service (any status); `how` says over what.
        case grpc(Found, how: String)
        /// Not a gRPC server, or one that refuses us whatever we retry: remembered.
        case rejected(String)
        /// Not now (the socket went away, a timeout): tried again on the next scan.
        case unavailable(String)
        case cancelled
    }

    private enum Attempt {
        case answered
        case failed(DialFailure)
        case noAnswer(String)
        case cancelled
    }

    /// Plaintext first, unless the flags ask for TLS or SPIFFE; a listener that does not speak
    /// plaintext HTTP/2 is tried once more with TLS. Its certificate is then verified only with
    /// -ready-tls-ca-cert: /proc showed the socket is our child's, which is what verification
    /// would establish.
    private func classify(_ listener: Listener) -> Verdict {
        let target = listener.target
        let name = listener.description
        if options.tls.tls || options.spiffe {
            let security: Security
            do { security = try makeSecurity() } catch { return cancelled ? .cancelled : .unavailable(error.reason) }
            let how = options.spiffe ? "SPIFFE mTLS" : "TLS"
            return verdict(attempt(target, security), found: Found(target: target, security: security, name: name, discovered: true), how: how)
        }
        let plain = attempt(target, .plaintext)
        switch plain {
        case .answered:
            return .grpc(Found(target: target, security: .plaintext, name: name, discovered: true), how: "plaintext")
        case .cancelled:
            return .cancelled
        case .failed(.connect), .failed(.resolve), .failed(.timedOut):
            return verdict(plain, found: nil, how: "")
        case .failed, .noAnswer:
            break
        }
        #if TLS
        var configuration = options.tlsConfiguration
        configuration.verify = !options.tls.caCert.isEmpty
        let security: Security
        do { security = .tls(try TLSContext(configuration)) } catch { return .rejected("TLS set-up failed: \(error)") }
        let how = configuration.verify ? "TLS, certificate verified (-ready-tls-ca-cert)"
            : "TLS, certificate not verified (the socket is the child's; -ready-tls-ca-cert verifies it)"
        switch attempt(target, security) {
        case .answered:
            return .grpc(Found(target: target, security: security, name: name, discovered: true), how: how)
        case .cancelled:
            return .cancelled
        case .failed(.certificateRejected):
            return .rejected("a TLS server that requires a client certificate (give -ready-tls-client-cert and -ready-tls-client-key, or -ready-spiffe)")
        case .failed, .noAnswer:
            break
        }
        #endif
        return verdict(plain, found: nil, how: "")
    }

    private func verdict(_ attempt: Attempt, found: Found?, how: String) -> Verdict {
        switch attempt {
        case .answered: return found.map { .grpc($0, how: how) } ?? .rejected("no answer")
        case .cancelled: return .cancelled
        case .noAnswer(let why): return .rejected(why)
        case .failed(let failure):
            switch failure {
            case .connect, .resolve: return .unavailable(failure.description)
            case .timedOut: return .unavailable("no HTTP/2 answer within \(options.connectTimeout)")
            case .cancelled: return .cancelled
            case .handshake(let handshake): return .rejected(ProbeFailure.describe(handshake, tls: handshake.tls))
            case .certificateRejected:
                return .rejected("the server requires a client certificate" + (options.tls.clientCert.isEmpty ? " (give -ready-tls-client-cert and -ready-tls-client-key, or -ready-spiffe)" : " and rejected ours"))
            }
        }
    }

    /// One Check, to learn whether the listener speaks gRPC: any status the server sends counts.
    private func attempt(_ target: Target, _ security: Security) -> Attempt {
        var pending: GRPCCall? = nil
        let connection: Connection
        do {
            connection = try dial(target, security: security, userAgent: options.sentUserAgent,
                                  by: Deadline.after(options.connectTimeout.nanoseconds, cancellation: signals)) { client in
                pending = client.startCall(path: Health.checkPath, metadata: metadata,
                                           timeoutNanoseconds: options.rpcTimeout.nanoseconds, request: request)
            }
        } catch {
            if case .cancelled = error { return .cancelled }
            return .failed(error)
        }
        let call = pending!
        switch connection.run(until: { call.status != nil }, by: Deadline.after(options.rpcTimeout.nanoseconds, cancellation: signals)) {
        case .cancelled: return .cancelled
        case .timedOut:
            // An HTTP/2 server that took the Check and is slow to answer it is the gRPC server
            // with a slow health service (what a liveness probe is for), not another protocol.
            return .answered
        case .done, .closed: break
        }
        guard let status = call.status else { return .noAnswer("connection closed") }
        return status.fromServer || !call.messages.isEmpty ? .answered : .noAnswer(status.description)
    }

    struct SetupFailure: Error {
        let reason: String
    }

    private lazy var svids = SVIDSource(userAgent: options.sentUserAgent, timeout: options.rpcTimeout.nanoseconds, signals: signals)
    private var lastSVID: [UInt8] = []

    /// For a new connection to a server already found: SPIFFE gets the newest SVID; otherwise
    /// the security it was found with (plaintext, or TLS chosen by discovery) is kept.
    private func makeSecurity(listenerSecurity: Security) throws(SetupFailure) -> Security {
        options.spiffe ? try makeSecurity() : listenerSecurity
    }

    /// The security the flags ask for; with -ready-spiffe, from the newest SVID.
    private func makeSecurity() throws(SetupFailure) -> Security {
        guard options.spiffe else {
            do { return try Probe(options: options, signals: signals).makeSecurity() } catch {
                throw SetupFailure(reason: error.lines.first ?? "cannot set up TLS")
            }
        }
        #if TLS
        let context: WorkloadAPI.X509Context
        do { context = try svids.current() } catch {
            switch error {
            case .cancelled:
                cancelled = true
                throw SetupFailure(reason: "cancelled")
            case .unavailable(let why):
                throw SetupFailure(reason: "SPIFFE credentials unavailable: \(why)")
            }
        }
        let svid = context.svids[0]
        if svid.certificates != lastSVID {
            reporter.send(.info("health: \(lastSVID.isEmpty ? "using" : "rotated to") an X.509-SVID for \(svid.spiffeID)"))
            lastSVID = svid.certificates
        }
        var configuration = TLSConfiguration()
        configuration.spiffe = context.credentials
        do { return .tls(try TLSContext(configuration)) } catch { throw SetupFailure(reason: "SPIFFE credentials unusable: \(error)") }
        #else
        throw SetupFailure(reason: "-ready-spiffe is not available: this grpc-init was built without TLS")
        #endif
    }

    // MARK: Watching it

    /// Health/Watch on one kept-open connection, each status reported as it arrives; a server
    /// without Watch gets a Check every interval. Returns when the connection is lost or the
    /// agent is signalled (false: the caller redials after a pause), or when the server sent
    /// GOAWAY (true: the caller moves to a new connection at once).
    private func watch(_ found: Found) -> Bool {
        let channel = Channel(target: found.target, security: found.security, userAgent: options.sentUserAgent,
                              connectTimeout: options.connectTimeout.nanoseconds)
        // With the endpoint on, probes come every few seconds: releasing the code between them
        // would make each fault it back in, so only a long quiet releases it.
        channel.releasesCodeAfter = endpoint == nil ? IdleWait.settle : 60_000
        endpoint?.attach(channel)
        defer { endpoint?.detach() }
        let watch = channel.start(path: Health.watchPath, metadata: metadata, request: request, serverStreaming: true, timeout: nil)
        while true {
            let outcome = channel.run(until: { !watch.messages.isEmpty || watch.status != nil || channel.isDraining },
                                      by: Deadline(Int64.max, cancellation: signals), serving: endpoint)
            if case .cancelled = outcome {
                cancelled = true
                return false
            }
            while let message = watch.nextMessage() { report(message, from: found) }
            if watch.status == nil && channel.isDraining {
                // GOAWAY: the Watch moves to a new connection (and, with -ready-spiffe, the newest
                // SVID) now, not when the server finally closes this one.
                reporter.send(.info("health: \(found.name) sent GOAWAY; watching on a new connection"))
                return true
            }
            guard let status = watch.status else {
                if case .closed = outcome { return false }
                continue
            }
            if status.code == .unimplemented && status.fromServer {
                reporter.send(.info("health: \(found.name) has no Health/Watch; a Check every \(interval)"))
                checkEvery(found, on: channel)
                return false
            }
            reporter.send(.notServing(status.fromServer ? "Health/Watch ended: \(status)" : status.message))
            return false
        }
    }

    private func checkEvery(_ found: Found, on channel: Channel) {
        while true {
            // One Check per interval, counted from each start: a change is seen within one interval.
            let started = MonotonicClock.now()
            let check = channel.start(path: Health.checkPath, metadata: metadata, request: request,
                                      timeout: options.rpcTimeout.nanoseconds)
            if case .cancelled = channel.run(until: { check.status != nil }, by: Deadline(check.deadline, cancellation: signals),
                                             serving: endpoint) {
                cancelled = true
                return
            }
            let status = check.status ?? GRPCStatus(.deadlineExceeded, "no answer within \(options.rpcTimeout)")
            if status.code == .ok, let message = check.nextMessage() {
                report(message, from: found)
            } else if status.fromServer {
                reporter.send(.notServing(status.description))
            } else {
                reporter.send(.notServing(status.message))
                if found.discovered && status.code == .unavailable { return }
            }
            if case .cancelled = channel.run(until: { false }, by: Deadline(started + interval.nanoseconds, cancellation: signals),
                                             serving: endpoint) {
                cancelled = true
                return
            }
        }
    }

    private func report(_ message: [UInt8], from found: Found) {
        do {
            let status = try Health.decodeResponse(message)
            reporter.send(status == .serving ? .serving(found.name) : .notServing(status.description))
        } catch {
            reporter.send(.notServing("a health response that does not decode: \(error)"))
        }
    }
}
