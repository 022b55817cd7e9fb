import GateProtocol
import Addressing
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// Calls to one server over a connection that lives: many calls, each with its own deadline,
/// share it; when the server goes away (GOAWAY) the calls on it finish there and new ones go to
/// a new connection; a call the server did not process (above a GOAWAY's last stream, refused,
/// or not yet sent when the connection broke) is sent again on the next connection, within its
/// deadline. For a process that lives, where the probe makes one connection and exits. A source
/// of the process's reactor: dialing is one of its states, so nothing waits on it.
public final class Channel: EventSource {
    public let target: Target
    public let security: Security
    public let userAgent: [UInt8]
    /// How long one dial may take (resolving, connecting, the handshakes).
    public let connectTimeout: Int64

    /// The connection calls go to now; nil until the first call, and after it broke.
    public private(set) var connection: Connection?
    /// Connections made so far (for a reporter, and to show reconnection in tests).
    public private(set) var dials = 0
    /// The most streams one connection had open at once.
    public private(set) var peakStreams = 0
    /// A call in flight, with what it takes to send it again.
    private struct Pending {
        let handle: CallHandle
        let path: String
        let metadata: [HeaderField]
        let request: [UInt8]
        let serverStreaming: Bool
        var call: GRPCCall?
        /// The connection the call went out on.
        var owner: Connection?
    }
    private var pending: [Pending] = []
    /// Connections still draining after a GOAWAY: their in-flight calls finish there.
    private var draining: [Connection] = []
    /// The dial under way, while there is no usable connection.
    private var dialer: Dialer?

    /// What goes out as :authority (nil: the target's).
    public let authority: String?

    /// A unary call ended (not cancelled by its caller): its path, how long it took, its status.
    public var onUnaryCallEnded: ((_ path: String, _ nanoseconds: Int64, _ status: GRPCStatus) -> Void)?

    public init(target: Target, security: Security, userAgent: [UInt8], connectTimeout: Int64, authority: String? = nil) {
        self.authority = authority
        self.target = target
        self.security = security
        self.userAgent = userAgent
        self.connectTimeout = connectTimeout
    }

    /// A call's outcome as the channel's caller sees it, whichever connection carried it.
    public final class CallHandle {
        /// Int64.max for a call without one (a Watch that lasts as long as the process).
        public let deadline: Int64
        public fileprivate(set) var status: GRPCStatus?
        /// Set when the call ended because no connection could be made for it.
        public fileprivate(set) var dialFailure: DialFailure?
        /// Received messages not taken yet; a streaming call's arrive as they come.
        public fileprivate(set) var messages: [[UInt8]] = []
        /// When the call was started (the monotonic clock).
        public let started = MonotonicClock.now()
        init(deadline: Int64) { self.deadline = deadline }

        /// Removes and returns the oldest received message.
        public func nextMessage() -> [UInt8]? { messages.isEmpty ? nil : messages.removeFirst() }
    }

    /// Starts a call; the channel's turns carry it to its end. A nil timeout: no deadline, and no
    /// grpc-timeout.
    public func start(path: String, metadata: [HeaderField] = [], request: [UInt8], serverStreaming: Bool = false,
                      timeout: Int64?) -> CallHandle {
        let handle = CallHandle(deadline: timeout.map { MonotonicClock.deadline(after: $0) } ?? Int64.max)
        pending.append(Pending(handle: handle, path: path, metadata: metadata, request: request, serverStreaming: serverStreaming))
        dispatch()
        return handle
    }

    // MARK: EventSource

    /// What each part gave last, to hand each its own poll results: the dialer's count, then
    /// the connections polled (in `polled`) and each one's count. Kept between turns, so that a
    /// turn allocates nothing.
    private var given: [Int] = []
    private var polled: [Connection] = []

    public func descriptors(into set: inout [pollfd]) {
        given.removeAll(keepingCapacity: true)
        polled.removeAll(keepingCapacity: true)
        var start = set.count
        dialer?.descriptors(into: &set)
        given.append(set.count - start)
        if let connection { polled.append(connection) }
        polled.append(contentsOf: draining)
        for each in polled {
            start = set.count
            each.descriptors(into: &set)
            given.append(set.count - start)
        }
    }

    public var wakeAt: Int64? {
        var earliest = Int64.max
        for entry in pending { earliest = min(earliest, entry.handle.deadline) }
        if let wake = dialer?.wakeAt { earliest = min(earliest, wake) }
        if let wake = connection?.wakeAt { earliest = min(earliest, wake) }
        for each in draining { if let wake = each.wakeAt { earliest = min(earliest, wake) } }
        return earliest == Int64.max ? nil : earliest
    }

    public func turn(_ results: ArraySlice<pollfd>, now: Int64) {
        var index = results.startIndex
        let parts = given
        let connections = polled
        if let dialer, let count = parts.first {
            dialer.turn(results[index..<index + count], now: now)
            index += count
            dialed(dialer)
        } else if let count = parts.first {
            index += count
        }
        for (offset, each) in connections.enumerated() {
            let count = offset + 1 < parts.count ? parts[offset + 1] : 0
            each.turn(results[index..<min(index + count, results.endIndex)], now: now)
            index += count
            peakStreams = max(peakStreams, each.client.connection.activeStreams)
        }
        retire()
        settle()
        dispatch()
    }

    /// Sends what waits for a connection, dialing when there is none.
    private func dispatch() {
        guard pending.contains(where: { $0.call == nil }) else { return }
        if let connection, !connection.client.isDraining && !connection.isClosed {
            sendWaiting(on: connection)
            _ = connection.pump(readable: false)
            return
        }
        guard dialer == nil else { return }
        dials += 1
        let started = Dialer(target, security: security, userAgent: userAgent, authority: authority, deadline: Deadline.after(connectTimeout))
        dialer = started
        dialed(started)
    }

    private func dialed(_ dialer: Dialer) {
        guard let outcome = dialer.outcome else { return }
        self.dialer = nil
        switch outcome {
        case .connected(let dialed):
            connection = dialed
            sendWaiting(on: dialed)
            _ = dialed.pump(readable: false)
        case .failed(let error):
            let status = GRPCStatus(.unavailable, "connection failed: \(error)")
            for index in pending.indices.reversed() where pending[index].call == nil {
                pending[index].handle.dialFailure = error
                finish(index, status)
            }
        }
    }

    /// The server sent GOAWAY on the connection new calls would go to: a caller holding a long
    /// call (a Watch) may move it to a new connection before the server closes this one.
    public var isDraining: Bool {
        if let connection { return connection.client.isDraining }
        return draining.contains { !$0.isClosed && $0.client.isDraining }
    }

    /// A connection that is draining (GOAWAY) or closed takes no new calls; once it carries none,
    /// it is let go.
    private func retire() {
        if let current = connection, current.client.isDraining || current.isClosed {
            draining.append(current)
            connection = nil
        }
        draining.removeAll { $0.isClosed || $0.client.outstanding == 0 }
    }

    private func sendWaiting(on connection: Connection) {
        for index in pending.indices where pending[index].call == nil {
            let entry = pending[index]
            let remaining = entry.handle.deadline == Int64.max ? nil : max(0, entry.handle.deadline.addingSaturated(-MonotonicClock.now()))
            pending[index].call = connection.client.startCall(path: entry.path, metadata: entry.metadata, timeoutNanoseconds: remaining,
                                                               serverStreaming: entry.serverStreaming, request: entry.request)
            pending[index].owner = connection
        }
    }

    /// Takes the results of calls that ended, sends again the ones the server never processed,
    /// and expires the ones past their deadline.
    private func settle() {
        let now = MonotonicClock.now()
        var index = 0
        while index < pending.count {
            let entry = pending[index]
            if let call = entry.call, let status = call.status {
                if call.wasNotProcessed && now < entry.handle.deadline {
                    pending[index].call = nil  // to the next connection
                    pending[index].owner = nil
                    index += 1
                    continue
                }
                while let message = call.nextMessage() { entry.handle.messages.append(message) }
                finish(index, status)
                continue
            }
            // A stream's messages reach the caller as they arrive; taken from the call, they
            // count against the handle's caller, who takes them each turn.
            if let call = entry.call {
                while let message = call.nextMessage() { entry.handle.messages.append(message) }
            }
            if now >= entry.handle.deadline {
                expire(entry.handle)
                continue
            }
            index += 1
        }
    }

    /// Gives up a call (its caller went away): its stream is reset, its status CANCELLED.
    public func cancel(_ handle: CallHandle) { end(handle, GRPCStatus(.canceled, "context canceled")) }

    /// Ends a call at its deadline: its stream is cancelled, its status DEADLINE_EXCEEDED.
    private func expire(_ handle: CallHandle) { end(handle, GRPCStatus(.deadlineExceeded, "context deadline exceeded")) }

    private func end(_ handle: CallHandle, _ status: GRPCStatus) {
        guard let index = pending.firstIndex(where: { $0.handle === handle }) else { return }
        if let call = pending[index].call, let owner = pending[index].owner { owner.client.cancel(call, status) }
        finish(index, status)
    }

    private func finish(_ index: Int, _ status: GRPCStatus) {
        let entry = pending.remove(at: index)
        if entry.handle.status == nil { entry.handle.status = status }
        if let onUnaryCallEnded, !entry.serverStreaming, status.code != .canceled {
            onUnaryCallEnded(entry.path, MonotonicClock.now().addingSaturated(-entry.handle.started), status)
        }
    }
}
