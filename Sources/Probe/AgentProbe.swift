import Flags
import GateProtocol
import Glibc
import SystemCalls
import Transport
import Wire

/// `grpc_health_probe` with no -addr, inside a grpc-init container: the health agent is asked
/// over the local probe socket, and its answer is printed with the probe's usual lines and exit
/// codes (0 SERVING; 4 NOT_SERVING or draining; 2 when the agent has no connection to the
/// server; 3 when the Check failed). The agent already knows where the server is, over which
/// transport and with which credentials.
enum AgentProbe {

    /// How the probe's lines name the agent.
    static let agentName = "grpc-init health agent"

    /// Where a probe with no -addr stands with the agent.
    enum Reach {
        case agent(Socket)
        /// Nobody listens on the name (or there is no /proc to make it from): no grpc-init here,
        /// and the probe fails as the reference does without -addr.
        case none
        /// Something holds the name, but no answer can come from it.
        case failed(ProbeFailure)
    }

    /// Pauses between tries while the agent's backlog is full: short, since a slot that frees
    /// up is taken again quickly by whoever fills the backlog.
    static let retries = Backoff(first: 500_000, maximum: 10_000_000)

    /// The agent's socket for this PID namespace, connected. A full backlog is tried again
    /// within -connect-timeout (a signal cuts the wait); a listener outside this PID namespace
    /// (another container of the pod holding the name) is not an agent to believe.
    static func connect(timeout: GoDuration, signals: SignalFD?) -> Reach {
        guard let namespace = Files.linkTarget("/proc/self/ns/pid"), let name = LocalProbeSocket.name(namespace: namespace),
              let address = SocketAddress.unix(name, abstract: true) else { return .none }
        switch Socket.connectUnix(to: address) {
        case .connected(let socket): return vetted(socket, name: name)
        case .failed: return .none
        case .backlogFull: break
        }
        let knock = Knock(address)
        let reactor = Reactor(cancellation: signals)
        reactor.add(knock)
        switch reactor.run(until: { knock.result != nil }, deadline: MonotonicClock.deadline(after: timeout.nanoseconds)) {
        case .done: break
        case .interrupted(.signal(let signo)): return .failed(ProbeFailure.cancelledWhileConnecting(agentName, signal: signo))
        case .interrupted(.deadline), .failed:
            return .failed(ProbeFailure.connectFailed(agentName, "the local probe socket @\(name) did not accept the connection within \(timeout) (its backlog stayed full)"))
        }
        switch knock.result {
        case .connected(let socket): return vetted(socket, name: name)
        case .failed, .backlogFull, nil: return .none
        }
    }

    /// On a connected unix socket SO_PEERCRED names the process that called listen(2): pid 0 is
    /// one outside this PID namespace, which grpc-init's supervisor here is not.
    private static func vetted(_ socket: Socket, name: String) -> Reach {
        guard socket.peerProcessID == 0 else { return .agent(socket) }
        return .failed(ProbeFailure.connectFailed(agentName, "the local probe socket @\(name) is held by a process outside this container"))
    }

    /// Connecting again, each try after a pause, while the backlog stays full.
    final class Knock: EventSource {
        let address: SocketAddress
        private var backoff = AgentProbe.retries
        private var next: Int64
        /// The last try's outcome, unless the backlog was full.
        private(set) var result: Socket.UnixConnect?

        init(_ address: SocketAddress) {
            self.address = address
            next = MonotonicClock.now().addingSaturated(backoff.next())
        }

        func descriptors(into set: inout [pollfd]) {}

        var wakeAt: Int64? { result == nil ? next : nil }

        func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
            guard result == nil, now >= next else { return }
            switch Socket.connectUnix(to: address) {
            case .backlogFull: next = now.addingSaturated(backoff.next())
            case let outcome: result = outcome
            }
        }
    }

    /// Asks and prints; returns the exit status.
    static func run(_ options: ProbeOptions, over socket: Socket, signals: SignalFD?) -> Int32 {
        if options.verbose { Output.line("asking grpc-init's health agent (no -addr)") }
        let service = options.serviceGiven ? String(decoding: options.service, as: UTF8.self) : nil
        let query = LocalQuery(service: service, verbose: options.verbose, timeout: options.rpcTimeout)
        let exchange = Exchange(socket: socket, query: query.frame)
        let reactor = Reactor(cancellation: signals)
        reactor.add(exchange)
        // The agent's Check has -rpc-timeout; the exchange itself is local and quick.
        let deadline = MonotonicClock.deadline(after: options.rpcTimeout.nanoseconds.addingSaturated(options.connectTimeout.nanoseconds))
        switch reactor.run(until: { exchange.answer != nil || exchange.failed }, deadline: deadline) {
        case .done: break
        case .interrupted(.signal(let signo)): return report(ProbeFailure.cancelledDuringRPC(signal: signo))
        case .interrupted(.deadline), .failed:
            return report(ProbeFailure.rpc(GRPCStatus(.deadlineExceeded), timeout: options.rpcTimeout))
        }
        guard let answer = exchange.answer else {
            return report(ProbeFailure.connectFailed(agentName, "the agent closed the connection without an answer"))
        }
        if options.verbose {
            for line in answer.lines { Output.line(line) }
        }
        let server = answer.server.isEmpty ? agentName : answer.server
        guard let failure = ProbeFailure(answer.verdict, server: server, timeout: options.rpcTimeout) else {
            Output.line("status: SERVING")
            return ProbeExit.serving.rawValue
        }
        return report(failure)
    }

    private static func report(_ failure: ProbeFailure) -> Int32 {
        failure.lines.forEach { Output.line($0) }
        return failure.exit.rawValue
    }

    /// One query out, one answer in, on the local socket.
    final class Exchange: EventSource {
        let socket: Socket
        private var outbound: [UInt8]
        private var decoder = GateFraming.Decoder()
        private var received = 0
        private(set) var answer: LocalAnswer?
        private(set) var failed = false

        init(socket: Socket, query: [UInt8]) {
            self.socket = socket
            outbound = query
        }

        func descriptors(into set: inout [pollfd]) {
            set.append(pollfd(fd: socket.fd, events: outbound.isEmpty ? Int16(POLLIN) : Int16(POLLOUT), revents: 0))
        }

        var wakeAt: Int64? { nil }

        func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
            guard let entry = polled.first, entry.revents != 0 else { return }
            if !outbound.isEmpty {
                switch outbound.withUnsafeBytes({ socket.write($0) }) {
                case .wrote(let n): outbound.removeFirst(n)
                case .failed: failed = true
                }
                return
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            switch buffer.withUnsafeMutableBytes({ socket.read(into: $0) }) {
            case .bytes(let n):
                received += n
                decoder.append(buffer[0..<n])
                guard received <= GateFraming.maxPayload + 4 else { return failed = true }
                do {
                    if let frame = try decoder.nextFrame() { answer = try LocalAnswer.decode(kind: frame.kind, payload: frame.payload) }
                } catch {
                    failed = true
                }
            case .wouldBlock: break
            case .endOfStream, .failed: failed = true
            }
        }
    }
}
