import Glibc
import SystemCalls

/// A listening socket that stays calm when descriptors run out. A listener whose accept fails
/// with EMFILE stays readable: polled again at once, it would turn the loop into a spin. So it
/// keeps one descriptor in reserve: with nothing else to give back, the reserve is let go for
/// a moment to accept one pending connection and close it (its client learns at once instead
/// of waiting), and the listener is left out of the poll for `pause`.
public final class ListeningSocket {
    public let socket: Socket
    /// Held only to be let go when no descriptor is left; -1 while it could not be had again.
    private var reserve: Int32
    /// Until then the listener is not polled.
    public private(set) var pausedUntil: Int64?
    public static let pause: Int64 = 100_000_000

    public init(_ socket: Socket) {
        self.socket = socket
        reserve = ListeningSocket.spare(socket.fd)
    }

    deinit { if reserve >= 0 { close(reserve) } }

    /// A descriptor that costs nothing: another reference to the listener's own open file
    /// (no path is needed, which a scratch image may not have).
    private static func spare(_ fd: Int32) -> Int32 { fcntl(fd, F_DUPFD_CLOEXEC, 0) }

    public var fd: Int32 { socket.fd }

    /// The listener's entry for the poll, unless it rests.
    public func descriptors(into set: inout [pollfd]) {
        if pausedUntil == nil { set.append(pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)) }
    }

    /// Ends the rest once it is over; call at each turn.
    public func resume(now: Int64) {
        if let until = pausedUntil, now >= until { pausedUntil = nil }
    }

    public func accept() -> Socket.Accepted { socket.acceptNext() }

    /// Out of descriptors with none to give back: one pending connection is accepted on the
    /// reserve's descriptor and closed, and the listener rests.
    public func refuseOne(now: Int64) {
        if reserve >= 0 {
            close(reserve)
            reserve = -1
            // Its Socket is let go at once, which closes it.
            _ = socket.acceptNext()
        }
        if reserve < 0 { reserve = ListeningSocket.spare(socket.fd) }
        pausedUntil = now.addingSaturated(ListeningSocket.pause)
    }
}
