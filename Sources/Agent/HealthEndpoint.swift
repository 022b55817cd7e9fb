import Addressing
import Client
import Flags
import GateProtocol
import HealthServer
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// -health-addr: one port that answers kubelet's native probes for the child, whatever the
/// child's own transport. HTTP/1.1 `GET /readyz` and `/livez`, and gRPC over h2c
/// (`grpc.health.v1.Health/Check` and `Watch`), told apart by the first bytes. What is not ready
/// (the health model's reason, a drain) is answered at once; what is ready is confirmed by a
/// fresh Check of the child on the agent's kept-open connection (a Watch is relayed), so a hung
/// child fails as it would under an exec probe. It faces the pod network: connections,
/// request heads, frames, header lists, queued bytes and resets are bounded, slow and idle
/// clients are cut off, and the answers hold health status and nothing else.
final class HealthEndpoint: EventSource {
    struct Limits {
        var maxConnections = 128
        var maxHeadBytes = 8 << 10
        /// A client must have sent a whole HTTP/1 request head (or the HTTP/2 preface) by then.
        var headTimeout: Int64 = 5_000_000_000
        /// An HTTP/2 connection with no stream open is closed after this.
        var idleTimeout: Int64 = 60_000_000_000
        var maxOutbound = 256 << 10
        /// An HTTP/2 request's body: a HealthCheckRequest is a few bytes.
        var maxRequestBody = 16 << 10
        var maxWatches = 64
        var defaultTimeout: Int64 = 1_000_000_000
        var maxTimeout: Int64 = 60_000_000_000
    }

    let limits: Limits
    private let listener: ListeningSocket
    /// The channel to the child while the agent holds one.
    private(set) var channel: Channel?
    /// What is known of the child's health: the reason for answers that need no Check, the drain.
    let model: HealthModel
    /// Fresh Lists of the servers watched.
    let lists: ServiceLists
    let metadata: [HeaderField]

    enum Speaks {
        case undecided
        case http1
        case http2(HTTP2Connection)
    }

    /// What a request waits for.
    enum Kind {
        case readyz, livez, check, watch, list
    }

    struct Pending {
        let kind: Kind
        /// The HTTP/2 stream it came on; nil over HTTP/1.1.
        let stream: UInt32?
        /// HEAD: the answer has no body.
        var headOnly = false
        /// `/readyz?verbose`: each service listed.
        var verbose = false
        var handle: Channel.CallHandle?
        /// The service the Check asks about.
        var service = ""
        /// The service the request named (nil: every configured service).
        var asked: String?
        /// When the answer is due (monotonic clock): the Lists and the Check it needs share it.
        var deadline: Int64 = 0
        /// The servers' fresh Lists it waits for (a verbose answer, the gRPC List), then what
        /// they gave.
        var waiting: ServiceLists.Wait?
        var listings: [ServerListing]?
    }

    /// An HTTP/2 request still arriving: its head and the body so far.
    struct Arriving {
        let fields: [HeaderField]
        var body: [UInt8] = []
    }

    final class Peer {
        let socket: Socket
        let accepted: Int64
        var speaks = Speaks.undecided
        var inbound: [UInt8] = []
        var outbound = ByteBuffer()
        var lastActivity: Int64
        var pending: [Pending] = []
        var arriving: [UInt32: Arriving] = [:]
        var closeWhenFlushed = false
        var closed = false
        /// A request of this connection may wait for Lists (kept from the walk of every turn
        /// when none does).
        var awaitsLists = false

        init(socket: Socket, now: Int64) {
            self.socket = socket
            accepted = now
            lastActivity = now
        }

        var hasRequest: Bool { !pending.isEmpty }
    }

    /// The connections open (internal for the tests of what wakes the reactor).
    var peers: [Peer] = []

    private let reporter: Reporter

    /// A probe arrived (discovery may look again at once).
    var onProbe: () -> Void = {}
    /// The supervisor's facts as last told, for `GET /metrics`.
    var facts: () -> SupervisorFacts? = { nil }
    /// This agent's start (wall clock, nanoseconds since the epoch), for `GET /metrics`.
    let started = WallClock.now()

    init(listener: Socket, model: HealthModel, lists: ServiceLists, metadata: [HeaderField], limits: Limits = Limits(), reporter: Reporter) {
        self.metadata = metadata
        self.lists = lists
        self.model = model
        self.limits = limits
        self.reporter = reporter
        self.listener = ListeningSocket(listener)
    }

    // MARK: The channel to the child

    func attach(_ channel: Channel) { self.channel = channel }

    /// The agent let its channel go: whatever waited on it is answered with the reason now.
    func detach() {
        channel = nil
        for peer in peers {
            for index in peer.pending.indices.reversed() where index < peer.pending.count && peer.pending[index].handle != nil {
                answerWithoutChild(peer, index)
            }
        }
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) {
        listener.descriptors(into: &set)
        for peer in peers {
            set.append(pollfd(fd: peer.socket.fd, events: Int16(POLLIN) | (peer.outbound.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
        }
    }

    /// At once when a Check it waits for has ended or a Watch has news (the channel's turn may
    /// come after ours); else the earliest peer deadline. A connection that closes once flushed
    /// resumes no Lists (`resumeListed`): its waits do not count, or a client that stopped
    /// reading would wake us at once every turn.
    var wakeAt: Int64? {
        var listed = Int64.max
        for peer in peers where !peer.closed {
            for entry in peer.pending {
                if let handle = entry.handle, handle.status != nil || !handle.messages.isEmpty { return 0 }
                if peer.awaitsLists && !peer.closeWhenFlushed, let waiting = entry.waiting { listed = min(listed, waiting.wakeAt) }
            }
        }
        var earliest = peers.map { deadline(of: $0) }.min()
        if listed < .max { earliest = min(earliest ?? listed, listed) }
        guard let resting = listener.pausedUntil else { return earliest }
        return min(earliest ?? resting, resting)
    }

    func deadline(of peer: Peer) -> Int64 {
        switch peer.speaks {
        case .undecided, .http1: return peer.hasRequest ? Int64.max : peer.accepted.addingSaturated(limits.headTimeout)
        case .http2(let connection): return connection.activeStreams > 0 ? Int64.max : peer.lastActivity.addingSaturated(limits.idleTimeout)
        }
    }

    /// Every turn, not only when its descriptors are ready: Checks on the channel may have ended.
    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        // The peers are polled in order, after the listener: each one's result is at its place.
        listener.resume(now: now)
        var index = polled.startIndex
        if index < polled.endIndex && polled[index].fd == listener.fd {
            if polled[index].revents != 0 { acceptAll(now: now) }
            index += 1
        }
        let readable = polled[index...]
        for (offset, peer) in peers.enumerated() where !peer.closed {
            let at = readable.startIndex + offset
            if at < readable.endIndex && readable[at].fd == peer.socket.fd && readable[at].revents != 0 { read(peer, now: now) }
            progress(peer, now: now)
            flush(peer)
            if !peer.closed && now >= deadline(of: peer) { close(peer) }
        }
        peers.removeAll { $0.closed }
    }

    // MARK: Connections

    private func acceptAll(now: Int64) {
        for _ in 0..<16 {
            switch listener.accept() {
            case .connection(let socket):
                // Full: the oldest connection with nothing asked makes room, so that a flood of
                // idle connections cannot keep a probe out; when everyone waits for an answer,
                // this one is refused (closed).
                if peers.count >= limits.maxConnections && !evictOldestIdle() { continue }
                peers.append(Peer(socket: socket, now: now))
            case .none:
                return
            case .exhausted:
                // Out of descriptors: the same rule, the newest connection over the oldest idle one.
                if evictOldestIdle() { continue }
                return listener.refuseOne(now: now)
            case .failed:
                continue
            }
        }
    }

    /// Closes the connection idle the longest, one with nothing asked, and lets its descriptor
    /// go; false when every connection waits for an answer.
    func evictOldestIdle() -> Bool {
        guard let idle = peers.filter({ !$0.hasRequest && !$0.closed }).min(by: { $0.lastActivity < $1.lastActivity }) else {
            return false
        }
        close(idle)
        peers.removeAll { $0.closed }
        return true
    }

    /// The model is draining: Watches hear it at once; the child's own Watches are let go.
    func startDraining() {
        for peer in peers {
            guard case .http2(let connection) = peer.speaks else { continue }
            for index in peer.pending.indices {
                guard case .watch = peer.pending[index].kind, let stream = peer.pending[index].stream else { continue }
                if let handle = peer.pending[index].handle { channel?.cancel(handle) }
                peer.pending[index].handle = nil
                connection.sendData(streamID: stream, GRPCServerCall.message(Health.response(.notServing)), endStream: false)
            }
        }
    }

    /// One read buffer for every client: reads take turns.
    private var readBuffer = [UInt8](repeating: 0, count: 16 << 10)

    private func read(_ peer: Peer, now: Int64) {
        switch readBuffer.withUnsafeMutableBytes({ peer.socket.read(into: $0) }) {
        case .bytes(let n):
            peer.lastActivity = now
            take(peer, Array(readBuffer[0..<n]))
        case .wouldBlock:
            break
        case .endOfStream, .failed:
            close(peer)
        }
    }

    private func take(_ peer: Peer, _ bytes: [UInt8]) {
        switch peer.speaks {
        case .undecided:
            peer.inbound += bytes
            // A TLS record (a ClientHello) on this plaintext port: nothing here can read it, so
            // the connection ends now, not at the head timeout.
            if peer.inbound.first == 0x16 {
                reporter.send(.tlsOnHealthPort)
                close(peer)
                return
            }
            let preface = HTTP2Connection.preface
            if peer.inbound.starts(with: preface.prefix(min(peer.inbound.count, preface.count))) {
                guard peer.inbound.count >= preface.count else { return }
                peer.speaks = .http2(HTTP2Connection(role: .server, limits: .server))
            } else {
                peer.speaks = .http1
            }
            let first = peer.inbound
            peer.inbound = []
            take(peer, first)
        case .http1:
            // One request per connection: bytes after its head are not read.
            guard !peer.hasRequest, !peer.closeWhenFlushed else { return }
            peer.inbound += bytes
            switch HTTP1Request.parse(peer.inbound, limit: limits.maxHeadBytes) {
            case .incomplete:
                return
            case .invalid(let status, let why):
                respond(peer, status: status, body: [why], head: false)
            case .request(let request, _):
                peer.inbound = []
                let head = request.method == "HEAD"
                if request.path == "/metrics" { return metrics(peer, method: request.method, accept: request.headers.first { $0.0 == "accept" }?.1) }
                switch healthRequest(method: request.method, path: request.path, parameter: request.parameter, stream: nil) {
                case .now(let status, let body, let extra): respond(peer, status: status, body: body, head: head, extra: extra)
                case .check(let pending):
                    peer.pending = [pending]
                    peer.awaitsLists = pending.waiting != nil
                    if pending.handle == nil && pending.waiting == nil { answerWithoutChild(peer, 0) }
                }
            }
        case .http2(let connection):
            // A connection error has queued GOAWAY: the connection closes once that is written.
            let events = (try? connection.receive(bytes)) ?? []
            for event in events { take(event, on: peer, connection) }
            pull(connection, into: peer)
        }
    }

    private func take(_ event: HTTP2Connection.Event, on peer: Peer, _ connection: HTTP2Connection) {
        switch event {
        case .headers(let stream, let fields, let end):
            // A second header block is the request's trailers, which end it.
            let request = peer.arriving.removeValue(forKey: stream) ?? Arriving(fields: fields)
            if end { answer(request, stream: stream, on: peer, connection) } else { peer.arriving[stream] = request }
        case .data(let stream, let bytes, let end):
            guard var request = peer.arriving.removeValue(forKey: stream) else { return }
            request.body += bytes
            if request.body.count > limits.maxRequestBody {
                connection.reset(streamID: stream, code: .enhanceYourCalm)
            } else if end {
                answer(request, stream: stream, on: peer, connection)
            } else {
                peer.arriving[stream] = request
            }
        case .reset(let stream, _), .streamError(let stream, _, _):
            peer.arriving[stream] = nil
            if let index = peer.pending.firstIndex(where: { $0.stream == stream }) {
                if let handle = peer.pending[index].handle { channel?.cancel(handle) }
                peer.pending.remove(at: index)
            }
        case .goAway:
            peer.closeWhenFlushed = true
        case .ready:
            break
        }
    }

    func pull(_ connection: HTTP2Connection, into peer: Peer) {
        if connection.hasOutbound { peer.outbound.append(contentsOf: connection.takeOutbound()) }
        if connection.failure != nil { peer.closeWhenFlushed = true }
    }

    private func flush(_ peer: Peer) {
        guard !peer.closed else { return }
        if !peer.outbound.isEmpty {
            switch peer.outbound.withUnsafeBytes({ peer.socket.write($0) }) {
            case .wrote(let n): peer.outbound.consume(n)
            case .failed: close(peer)
            }
        }
        if peer.outbound.count > limits.maxOutbound { close(peer) }
        if peer.outbound.isEmpty && peer.closeWhenFlushed { close(peer) }
    }

    func close(_ peer: Peer) {
        guard !peer.closed else { return }
        peer.closed = true
        for entry in peer.pending { if let handle = entry.handle { channel?.cancel(handle) } }
        peer.pending = []
        // The socket closes as the peer goes.
        shutdown(peer.socket.fd, Int32(SHUT_RDWR))
    }
}

