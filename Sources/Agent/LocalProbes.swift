import Client
import GateProtocol
import HealthServer
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// The local probe socket: `grpc_health_probe` with no -addr, run in the same container, asks
/// here and is answered from the health model (one query, one answer, then the connection
/// closes). Only a peer in the agent's PID namespace is served: a container of the same pod
/// shares the network namespace, where the socket's abstract name lives, but not the PID one.
final class LocalProbes: EventSource {
    struct Limits {
        var maxConnections = 16
        /// Connections taken from the backlog in one turn: those from outside the PID namespace
        /// are closed at once and take no place, so a flood of them is drained in a few turns.
        var acceptsPerTurn = 256
        /// A query must have arrived by then.
        var queryTimeout: Int64 = 2_000_000_000
        var maxQuery = 4 << 10
        /// The longest Check a query may ask for.
        var maxTimeout: Int64 = 60_000_000_000
    }

    final class Peer {
        let socket: Socket
        let accepted: Int64
        var decoder = GateFraming.Decoder()
        var received = 0
        var query: LocalQuery?
        var handle: Channel.CallHandle?
        /// The service the Check asks about.
        var checked = ""
        /// With -v: the servers' fresh Lists it waits for, then what they gave.
        var waiting: ServiceLists.Wait?
        /// When the answer is due (monotonic clock), from the query's timeout: the Lists and the
        /// Check share it.
        var deadline: Int64?
        var listings: [ServerListing]?
        var outbound = ByteBuffer()
        var closed = false

        init(socket: Socket, accepted: Int64) {
            self.socket = socket
            self.accepted = accepted
        }
    }

    let limits: Limits
    private let listener: ListeningSocket
    private let model: HealthModel
    private let lists: ServiceLists
    private let metadata: [HeaderField]
    private(set) var channel: Channel?
    private var peers: [Peer] = []
    /// A probe arrived (discovery may look again at once).
    var onProbe: () -> Void = {}
    /// Out of descriptors: another part of the agent lets one go (the health endpoint's
    /// connection idle the longest), or says it has none to give.
    var makeRoom: () -> Bool = { false }
    private var buffer = [UInt8](repeating: 0, count: 4096)

    init(listener: Socket, model: HealthModel, lists: ServiceLists, metadata: [HeaderField], limits: Limits = Limits()) {
        self.listener = ListeningSocket(listener)
        self.lists = lists
        self.metadata = metadata
        self.model = model
        self.limits = limits
    }

    func attach(_ channel: Channel) { self.channel = channel }

    func detach() {
        channel = nil
        for peer in peers where peer.handle != nil && peer.handle?.status == nil {
            peer.handle = nil
            answer(peer, HealthServer.verdict(for: LocalProbes.question(peer), model.snapshot(connected: false)))
        }
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) {
        // Full: our own wait in the backlog (a probe that finds it full tries again), and so do
        // the foreign ones, until a place is free.
        if peers.count < limits.maxConnections { listener.descriptors(into: &set) }
        for peer in peers {
            set.append(pollfd(fd: peer.socket.fd, events: peer.outbound.isEmpty ? Int16(POLLIN) : Int16(POLLOUT), revents: 0))
        }
    }

    var wakeAt: Int64? {
        var earliest = Int64.max
        for peer in peers {
            if let handle = peer.handle, handle.status != nil { return 0 }
            if let waiting = peer.waiting { earliest = min(earliest, waiting.wakeAt) }
            if peer.query == nil { earliest = min(earliest, peer.accepted.addingSaturated(limits.queryTimeout)) }
        }
        if let resting = listener.pausedUntil { earliest = min(earliest, resting) }
        return earliest == .max ? nil : earliest
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        listener.resume(now: now)
        var ready: Set<Int32> = []
        for entry in polled where entry.revents != 0 {
            if entry.fd == listener.fd { acceptSome(now: now) } else { ready.insert(entry.fd) }
        }
        for peer in peers where !peer.closed {
            if ready.contains(peer.socket.fd) {
                if peer.query == nil { read(peer, now: now) } else { readAfterQuery(peer) }
            }
            if let waiting = peer.waiting, let query = peer.query, let listings = waiting.listings(now: now) {
                peer.waiting = nil
                peer.listings = listings
                lists.settle()
                ask(peer, query, now: now)
            }
            if let handle = peer.handle, let status = handle.status {
                peer.handle = nil
                answer(peer, HealthServer.verdict(checking: peer.checked, status: status, message: handle.nextMessage(),
                                                  unreachable: handle.dialFailure?.unreachable, model.snapshot(connected: true)))
            }
            flush(peer)
            if !peer.closed && peer.query == nil && now >= peer.accepted.addingSaturated(limits.queryTimeout) { close(peer) }
        }
        peers.removeAll { $0.closed }
    }

    private func acceptSome(now: Int64) {
        for _ in 0..<limits.acceptsPerTurn {
            guard peers.count < limits.maxConnections else { return }
            switch listener.accept() {
            case .connection(let socket):
                // Outside our PID namespace the peer's pid reads 0: another container of the
                // pod. Its Socket is let go here, which closes it.
                guard socket.peerProcessID > 0 else { continue }
                peers.append(Peer(socket: socket, accepted: now))
            case .none:
                return
            case .exhausted:
                if makeRoom() { continue }
                return listener.refuseOne(now: now)
            case .failed:
                continue
            }
        }
    }

    private func read(_ peer: Peer, now: Int64) {
        switch buffer.withUnsafeMutableBytes({ peer.socket.read(into: $0) }) {
        case .bytes(let n):
            peer.received += n
            guard peer.received <= limits.maxQuery else { return close(peer) }
            peer.decoder.append(buffer[0..<n])
            do {
                guard let frame = try peer.decoder.nextFrame() else { return }
                let query = try LocalQuery.decode(kind: frame.kind, payload: frame.payload)
                peer.query = query
                onProbe()
                ask(peer, query, now: now)
            } catch {
                close(peer)
            }
        case .wouldBlock:
            break
        case .endOfStream, .failed:
            close(peer)
        }
    }

    /// One query per connection: anything after it, or the probe going away (killed at its
    /// exec timeout), ends the connection and the Check it waits for. Left unread, a readable
    /// socket would wake every turn until the Check ends.
    private func readAfterQuery(_ peer: Peer) {
        switch buffer.withUnsafeMutableBytes({ peer.socket.read(into: $0) }) {
        case .wouldBlock: break
        case .bytes, .endOfStream, .failed: close(peer)
        }
    }

    static func question(_ peer: Peer) -> HealthQuestion {
        HealthQuestion(.ready, service: peer.query?.service, verbose: peer.query?.verbose ?? false, listings: peer.listings)
    }

    private func ask(_ peer: Peer, _ query: LocalQuery, now: Int64) {
        let question = LocalProbes.question(peer)
        var snapshot = model.snapshot(connected: channel != nil)
        if question.needsLists { snapshot.listable = lists.listable }
        let deadline = peer.deadline ?? now.addingSaturated(min(query.timeout.nanoseconds, limits.maxTimeout))
        peer.deadline = deadline
        let timeout = HealthServer.remaining(until: deadline, now: now)
        switch HealthServer.decide(question, snapshot) {
        case .list(let servers):
            peer.waiting = lists.wait(for: servers, until: HealthServer.listsDeadline(now: now, deadline: deadline), now: now)
        case .now(let verdict, _):
            answer(peer, verdict)
        case .check(let service), .watch(let service):
            peer.checked = service
            peer.handle = channel?.start(path: Health.checkPath, metadata: metadata, request: Health.request(service: service), timeout: timeout)
        }
    }

    private func answer(_ peer: Peer, _ verdict: Verdict) {
        model.counters.probe(.local, success: verdict.isServing)
        let verbose = peer.query?.verbose ?? false
        let snapshot = model.snapshot(connected: channel != nil)
        let answer = LocalAnswer(verdict: verdict, server: snapshot.server, services: verbose ? snapshot.lines(peer.listings ?? []) : [])
        peer.outbound.append(contentsOf: answer.frame)
    }

    private func flush(_ peer: Peer) {
        guard !peer.outbound.isEmpty, !peer.closed else { return }
        switch peer.outbound.withUnsafeBytes({ peer.socket.write($0) }) {
        case .wrote(let n):
            peer.outbound.consume(n)
            if peer.outbound.isEmpty { close(peer) }
        case .failed:
            close(peer)
        }
    }

    private func close(_ peer: Peer) {
        guard !peer.closed else { return }
        peer.closed = true
        peer.waiting = nil
        if let handle = peer.handle { channel?.cancel(handle) }
        peer.handle = nil
        shutdown(peer.socket.fd, Int32(SHUT_RDWR))
    }
}
