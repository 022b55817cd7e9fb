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

    /// The agent's socket for this PID namespace, connected; nil when there is none (no /proc,
    /// no grpc-init here): the probe then fails as the reference does without -addr.
    static func connect() -> Socket? {
        guard let namespace = Files.linkTarget("/proc/self/ns/pid"), let name = LocalProbeSocket.name(namespace: namespace),
              let address = SocketAddress.unix(name, abstract: true),
              let (socket, connected) = try? Socket.startConnect(to: address) else { return nil }
        // A unix socket connects at once or is refused; one still in progress is a full backlog.
        return connected ? socket : nil
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
        let deadline = MonotonicClock.deadline(after: options.rpcTimeout.nanoseconds + options.connectTimeout.nanoseconds)
        switch reactor.run(until: { exchange.answer != nil || exchange.failed }, deadline: deadline) {
        case .done: break
        case .interrupted(.signal(let signo)): return report(ProbeFailure.cancelledDuringRPC(signal: signo))
        case .interrupted(.deadline), .failed:
            return report(ProbeFailure.rpc(GRPCStatus(.deadlineExceeded), timeout: options.rpcTimeout))
        }
        guard let answer = exchange.answer else {
            return report(ProbeFailure.connectFailed("grpc-init health agent", "the agent closed the connection without an answer"))
        }
        if options.verbose {
            for line in answer.services { Output.line("[\(line.serving ? "+" : "-")]\(serviceLabel(line.service)) \(line.status)") }
        }
        switch answer.outcome {
        case .serving:
            Output.line("status: SERVING")
            return ProbeExit.serving.rawValue
        case .notServing(let status):
            return report(ProbeFailure.unhealthy(named: status))
        case .noConnection(let reason):
            return report(ProbeFailure.connectFailed(answer.server.isEmpty ? "grpc-init health agent" : answer.server, reason.description))
        case .rpcFailed(let code, let message):
            return report(ProbeFailure.rpc(GRPCStatus(rawCode: Int(code), message: message, fromServer: true), timeout: options.rpcTimeout))
        }
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
