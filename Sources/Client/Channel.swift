import Addressing
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// Something else one poll(2) watches beside a channel's connections: a server whose requests
/// become the channel's calls. `serve` is called with its descriptors' results after each poll,
/// and with none whenever the channel's calls have moved, so that it can answer what finished.
public protocol EventSource: AnyObject {
    func pollDescriptors() -> [pollfd]
    /// When it needs to run next (a client's deadline), if ever.
    var wakeAt: Int64? { get }
    func serve(_ polled: ArraySlice<pollfd>)
}

/// Calls to one server over a connection that lives: many calls, each with its own deadline,
/// share it; when the server goes away (GOAWAY) the calls on it finish there and new ones go to
/// a new connection; a call the server did not process (above a GOAWAY's last stream, refused,
/// or not yet sent when the connection broke) is sent again on the next connection, within its
/// deadline. For a process that lives, where the probe makes one connection and exits.
public final class Channel {
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
    /// A wait with no deadline releases the process's code pages once nothing has happened for
    /// this many milliseconds (IdleWait): for a process that holds a channel open and mostly
    /// sleeps. Nil: never.
    public var releasesCodeAfter: Int32? {
        get { idle.settle }
        set { idle.settle = newValue }
    }
    private var idle = IdleWait(settle: nil)

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

    public init(target: Target, security: Security, userAgent: [UInt8], connectTimeout: Int64) {
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
        /// Received messages not taken yet; a streaming call's arrive as they come.
        public fileprivate(set) var messages: [[UInt8]] = []
        init(deadline: Int64) { self.deadline = deadline }

        /// Removes and returns the oldest received message.
        public func nextMessage() -> [UInt8]? { messages.isEmpty ? nil : messages.removeFirst() }
    }

    /// Starts a call; `run` carries it to its end. A nil timeout: no deadline, and no grpc-timeout.
    public func start(path: String, metadata: [HeaderField] = [], request: [UInt8], serverStreaming: Bool = false,
                      timeout: Int64?) -> CallHandle {
        let handle = CallHandle(deadline: timeout.map { MonotonicClock.deadline(after: $0) } ?? Int64.max)
        pending.append(Pending(handle: handle, path: path, metadata: metadata, request: request, serverStreaming: serverStreaming))
        return handle
    }

    /// Moves every started call forward until `finished` holds, `deadline` passes or its
    /// cancellation arrives. Calls whose own deadline passes end with DEADLINE_EXCEEDED. One
    /// poll(2) covers every connection with calls on it, the cancellation, and the descriptors
    /// of `source` (a server in the same process, whose requests become calls here).
    public func run(until finished: () -> Bool, by deadline: Deadline, serving source: EventSource? = nil) -> Connection.Outcome {
        while true {
            settle()
            source?.serve([])
            if finished() { return .done }
            if deadline.hasPassed { return .timedOut }
            if pending.contains(where: { $0.call == nil }) && !ensureConnection(by: deadline) { continue }
            let live = [connection].compactMap { $0 } + draining
            for each in live {
                _ = each.pump(readable: false)  // new requests out
                peakStreams = max(peakStreams, each.client.connection.activeStreams)
            }
            retire()
            settle()
            if finished() { return .done }
            var fds = live.map { pollfd(fd: $0.stream.fd, events: $0.pollEvents, revents: 0) }
            var cancelIndex: Int? = nil
            if let cancelFD = deadline.cancelFD {
                cancelIndex = fds.count
                fds.append(pollfd(fd: cancelFD, events: Int16(POLLIN), revents: 0))
            }
            let sourceStart = fds.count
            if let source { fds += source.pollDescriptors() }
            var earliest = min(pending.map(\.handle.deadline).min() ?? deadline.instant, deadline.instant)
            if let wake = source?.wakeAt { earliest = min(earliest, wake) }
            let timeout = live.contains { $0.moreToRead } ? 0 : MonotonicClock.pollTimeout(until: earliest)
            let n = idle.poll(&fds, timeout: timeout)
            if n < 0 && errno != EINTR { return .closed }
            if let cancelIndex, fds[cancelIndex].revents != 0, let info = deadline.cancellation?.next() {
                return .cancelled(signal: Int32(info.ssi_signo))
            }
            for (index, each) in live.enumerated() where fds[index].revents != 0 || each.moreToRead {
                _ = each.pump(readable: true)
            }
            retire()
            // What finished is answered at the top of the next turn, after settle().
            source?.serve(fds[sourceStart...])
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

    /// One request/response call (Check), run to its end.
    public func unary(path: String, metadata: [HeaderField] = [], request: [UInt8], timeout: Int64,
                      cancellation: SignalFD? = nil) -> CallHandle {
        let handle = start(path: path, metadata: metadata, request: request, timeout: timeout)
        _ = run(until: { handle.status != nil }, by: Deadline(handle.deadline, cancellation: cancellation))
        if handle.status == nil { expire(handle) }
        return handle
    }

    /// Dials when there is no usable connection. Returns false when the dial failed (the calls
    /// waiting for it then fail with its cause, or retry within their deadlines).
    private func ensureConnection(by deadline: Deadline) -> Bool {
        if let connection, !connection.client.isDraining && !connection.isClosed {
            sendWaiting(on: connection)
            return true
        }
        dials += 1
        do {
            let dialed = try dial(target, security: security, userAgent: userAgent,
                                  by: deadline.capped(at: MonotonicClock.deadline(after: connectTimeout)))
            connection = dialed
            sendWaiting(on: dialed)
            return true
        } catch {
            let status = GRPCStatus(.unavailable, "connection failed: \(error)")
            for index in pending.indices.reversed() where pending[index].call == nil { finish(index, status) }
            return false
        }
    }

    private func sendWaiting(on connection: Connection) {
        for index in pending.indices where pending[index].call == nil {
            let entry = pending[index]
            let remaining = entry.handle.deadline == Int64.max ? nil : max(0, entry.handle.deadline - MonotonicClock.now())
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
    }
}
