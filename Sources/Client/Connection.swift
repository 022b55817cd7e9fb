import Glibc
import SystemCalls
import Transport
import Wire

/// One connection to a gRPC server: a connected byte stream (plain or TLS) and the gRPC client
/// (HTTP/2, sans-IO) over it, as a source of a reactor: each turn writes what the client queued
/// and reads what the socket holds, a bounded amount.
public final class Connection: EventSource {
    /// Why a connection's transport failed, as data.
    public enum TransportFailure: Equatable, Sendable, CustomStringConvertible {
        case stream(StreamFailure)
        /// The server stopped reading: this much of what we sent stayed unsent.
        case notReading(unsent: Int)

        public var description: String {
            switch self {
            case .stream(let failure): return failure.description
            case .notReading(let unsent): return "the server is not reading what it is sent (over \(unsent) bytes unsent)"
            }
        }

        public var isTLSAlert: Bool {
            if case .stream(let failure) = self { return failure.isTLSAlert }
            return false
        }

        public var isTLS: Bool {
            if case .stream(let failure) = self { return failure.isTLS }
            return false
        }
    }

    public enum Outcome: Equatable {
        case done
        case interrupted(Interruption)
        /// The connection ended; `transportFailure` or the client's status says why.
        case closed
    }

    public let stream: ByteStream
    public let client: GRPCClient
    /// The address this connection reached.
    public let address: SocketAddress
    private var unsent = ByteBuffer()
    private var readBuffer = [UInt8](repeating: 0, count: 16 << 10)
    /// The first bytes the server sent, kept to explain a failed HTTP/2 handshake.
    public private(set) var firstBytes: [UInt8] = []
    /// Why the transport failed, when it did (a TLS alert, a reset, a server that does not read).
    public private(set) var transportFailure: TransportFailure?

    public init(stream: ByteStream, client: GRPCClient, address: SocketAddress) {
        self.stream = stream
        self.client = client
        self.address = address
    }

    /// What one turn of the loop reads at most. Between turns the deadline and the signalfd are
    /// looked at, so a server that never stops sending cannot hold the probe past either.
    static let readBudget = 32 << 10
    /// What may wait unsent (our frames the server has not read) before the connection counts
    /// as failed: a server that floods PINGs or SETTINGS and reads nothing would otherwise make
    /// the answers pile up without end.
    static let unsentLimit = 1 << 20

    /// Moves bytes until `finished` holds, the deadline passes, its cancellation arrives or the
    /// connection ends: a reactor of its own, for a caller with nothing else to wait on.
    public func run(until finished: () -> Bool, by deadline: Deadline) -> Outcome {
        let reactor = Reactor(cancellation: deadline.cancellation)
        reactor.add(self)
        switch reactor.run(until: { isClosed || finished() }, deadline: deadline.instant) {
        case .done: return finished() ? .done : .closed
        case .interrupted(let why): return .interrupted(why)
        case .failed(let code):
            transportFailure = .stream(.system(operation: "poll", errno: code))
            return .closed
        }
    }

    /// The last turn stopped at its budget (or TLS may hold decrypted bytes that poll cannot
    /// see): the next poll must not wait.
    public private(set) var moreToRead = false
    /// What to poll the socket for.
    public var pollEvents: Int16 { Int16(POLLIN) | (unsent.isEmpty ? 0 : Int16(POLLOUT)) }
    public private(set) var isClosed = false

    /// One pass that does not wait, for a caller that polls several connections: writes what
    /// it can, and reads (one turn's budget) when `readable`. Returns false once the connection
    /// has ended.
    public func pump(readable: Bool) -> Bool {
        guard !isClosed, flush() else { return false }
        if readable || moreToRead, case .ended = readTurn() { return false }
        return flush()
    }

    // MARK: EventSource

    public func descriptors(into set: inout [pollfd]) {
        if !isClosed { set.append(pollfd(fd: stream.fd, events: pollEvents, revents: 0)) }
    }

    /// At once while a turn's budget left bytes to read (or TLS holds some poll cannot see), or
    /// while frames wait to be written.
    public var wakeAt: Int64? { !isClosed && (moreToRead || client.connection.hasOutbound) ? 0 : nil }

    public func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        let readable = polled.first.map { $0.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 } ?? false
        _ = pump(readable: readable)
    }

    /// Writes what the HTTP/2 connection has queued, as far as the socket takes it now. Returns
    /// false when the connection failed (the client has been told).
    private func flush() -> Bool {
        if isClosed { return false }
        if client.connection.hasOutbound { unsent.append(contentsOf: client.connection.takeOutbound()) }
        guard !unsent.isEmpty else { return true }
        switch unsent.withUnsafeBytes({ stream.write($0) }) {
        case .wrote(let n):
            unsent.consume(n)
        case .failed(let reason):
            // A server that rejects us (a TLS client certificate, say) sends an alert and
            // closes; its reset can fail this write before the alert is read. The alert is
            // still queued, and says more than the reset.
            _ = readTurn()
            if transportFailure?.isTLSAlert != true { transportFailure = .stream(reason) }
            client.transportClosed("connection error: \(transportFailure!)")
            isClosed = true
            return false
        }
        if unsent.count > Connection.unsentLimit {
            transportFailure = .notReading(unsent: Connection.unsentLimit)
            client.transportClosed("connection error: \(transportFailure!)")
            isClosed = true
            return false
        }
        return true
    }

    private enum Turn {
        case ended(Outcome)
        case budgetSpent
        case wouldBlock
    }

    /// Reads until the socket would block or `readBudget` bytes were taken.
    private func readTurn() -> Turn {
        var taken = 0
        while taken < Connection.readBudget {
            let result = readBuffer.withUnsafeMutableBytes { stream.read(into: $0) }
            switch result {
            case .bytes(let n):
                moreToRead = true
                taken += n
                let chunk = Array(readBuffer[0..<n])
                if firstBytes.count < 64 { firstBytes.append(contentsOf: chunk.prefix(64 - firstBytes.count)) }
                client.receive(chunk)
                // A connection error ends the calls; a GOAWAY lets those in flight finish.
                if client.connectionFailure != nil { return .budgetSpent }
            case .wouldBlock:
                moreToRead = false
                return .wouldBlock
            case .endOfStream:
                moreToRead = false
                isClosed = true
                client.transportClosed("error reading from server: EOF")
                return .ended(.closed)
            case .failed(let reason):
                moreToRead = false
                isClosed = true
                transportFailure = .stream(reason)
                client.transportClosed("error reading from server: \(reason)")
                return .ended(.closed)
            }
        }
        return .budgetSpent
    }
}
