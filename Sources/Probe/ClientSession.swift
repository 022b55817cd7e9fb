import Glibc
import SystemCalls
import Transport
import Wire

/// Drives a GRPCClient over a connected byte stream (plain or TLS) until a condition holds, a deadline passes, a
/// cancelling signal arrives or the connection ends. One poll(2) covers the socket and the
/// signalfd, so a signal interrupts the wait at once.
final class ClientSession {
    enum Outcome: Equatable {
        case done
        case timedOut
        case cancelled(signal: Int32)
        /// The connection ended; `transportFailure` or the client's status says why.
        case closed
    }

    let stream: ByteStream
    let client: GRPCClient
    private var unsent: [UInt8] = []
    private var readBuffer = [UInt8](repeating: 0, count: 16 << 10)
    /// The first bytes the server sent, kept to explain a failed HTTP/2 handshake.
    private(set) var firstBytes: [UInt8] = []
    /// Why the transport failed, when it did ("remote error: tls: certificate required").
    private(set) var transportFailure: String?

    init(stream: ByteStream, client: GRPCClient) {
        self.stream = stream
        self.client = client
    }

    func run(until finished: () -> Bool, deadline: Int64, signals: SignalFD?) -> Outcome {
        while true {
            if client.connection.hasOutbound { unsent.append(contentsOf: client.connection.takeOutbound()) }
            if !unsent.isEmpty {
                switch unsent.withUnsafeBytes({ stream.write($0) }) {
                case .wrote(let n):
                    unsent.removeFirst(n)
                case .failed(let reason):
                    // A server that rejects us (a TLS client certificate, say) sends an alert and
                    // closes; its reset can fail this write before the alert is read. The alert
                    // is still queued, and says more than the reset.
                    _ = readAvailable()
                    if !(transportFailure?.hasPrefix("remote error: ") ?? false) { transportFailure = reason }
                    client.transportClosed("connection error: \(transportFailure ?? reason)")
                    return .closed
                }
            }
            if finished() { return .done }
            var fds = [pollfd(fd: stream.fd, events: Int16(POLLIN) | (unsent.isEmpty ? 0 : Int16(POLLOUT)), revents: 0)]
            if let signals { fds.append(pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0)) }
            let n = poll(&fds, nfds_t(fds.count), MonotonicClock.pollTimeout(until: deadline))
            if n < 0 && errno != EINTR {
                transportFailure = "poll: \(goErrnoText(errno))"
                return .closed
            }
            if fds.count > 1 && fds[1].revents != 0, let info = signals?.next() {
                return .cancelled(signal: Int32(info.ssi_signo))
            }
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                if let ended = readAvailable() { return ended }
            }
            if n == 0 && MonotonicClock.now() >= deadline { return .timedOut }
        }
    }

    /// Reads until the socket would block; returns an outcome only when the connection ended.
    private func readAvailable() -> Outcome? {
        while true {
            let result = readBuffer.withUnsafeMutableBytes { stream.read(into: $0) }
            switch result {
            case .bytes(let n):
                let chunk = Array(readBuffer[0..<n])
                if firstBytes.count < 64 { firstBytes.append(contentsOf: chunk.prefix(64 - firstBytes.count)) }
                client.receive(chunk)
                if client.connectionFailure != nil { return nil }
            case .wouldBlock:
                return nil
            case .endOfStream:
                client.transportClosed("error reading from server: EOF")
                return .closed
            case .failed(let reason):
                transportFailure = reason
                client.transportClosed("error reading from server: \(reason)")
                return .closed
            }
        }
    }
}
