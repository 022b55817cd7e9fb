import CShim
import Glibc
import SystemCalls

/// Why a connection could not be made, as data; `description` is Go's text for it
/// ("dial tcp ADDR: connect: connection refused").
public enum ConnectFailure: Error, Equatable, CustomStringConvertible {
    /// A system call failed: the network ("tcp", "unix"), the address, the step ("socket",
    /// "connect", "getsockopt") and its errno.
    case system(network: String, address: SocketAddress, step: String, errno: Errno)
    /// The TLS handshake failed.
    case tls(TLSFailure)

    public var description: String {
        switch self {
        case .system(let network, let address, let step, let code): return "dial \(network) \(address): \(step): \(code.goText)"
        case .tls(let failure): return failure.description
        }
    }
}

/// Why reading or writing a connection failed, as data; `description` is Go's wording.
public enum StreamFailure: Error, Equatable, CustomStringConvertible {
    /// A system call failed: "read", "write" and its errno.
    case system(operation: String, errno: Errno)
    /// The TLS layer failed: an alert from the peer, or another failure.
    case tls(TLSFailure)

    public var description: String {
        switch self {
        case .system(let operation, let code): return "\(operation): \(code.goText)"
        case .tls(let failure): return failure.description
        }
    }

    public var isTLSAlert: Bool {
        if case .tls(.alert) = self { return true }
        return false
    }

    /// A failure of the TLS layer, which names its cause better than a failed system call that
    /// followed it.
    public var isTLS: Bool {
        if case .tls = self { return true }
        return false
    }
}

public enum ReadResult: Equatable {
    case bytes(Int)
    case wouldBlock
    case endOfStream
    case failed(StreamFailure)
}

public enum WriteResult: Equatable {
    /// How many bytes were taken; 0 when the stream would block.
    case wrote(Int)
    case failed(StreamFailure)
}

/// What the HTTP/2 client reads from and writes to: a plain socket or a TLS connection over one.
/// Both are non-blocking; `fd` is what to poll.
public protocol ByteStream: AnyObject {
    var fd: Int32 { get }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult
    func write(_ bytes: UnsafeRawBufferPointer) -> WriteResult
}

/// A connected, non-blocking stream socket.
public final class Socket: ByteStream {
    public let fd: Int32
    /// Where it connects to (nil for a listening or accepted socket).
    let address: SocketAddress?

    private init(fd: Int32, address: SocketAddress? = nil) {
        self.fd = fd
        self.address = address
    }

    deinit { close(fd) }

    /// Starts connecting without waiting: the socket, and whether it is connected already (a
    /// UNIX socket usually is). Otherwise poll it for POLLOUT, then `finishConnect`. A refusal the
    /// kernel knows at once is thrown at once.
    public static func startConnect(to address: SocketAddress) throws(ConnectFailure) -> (Socket, connected: Bool) {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw failure(address, "socket", errno) }
        let sock = Socket(fd: fd, address: address)
        if address.family != AF_UNIX {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let result = address.withSockaddr { Glibc.connect(fd, $0, $1) }
        if result == 0 { return (sock, true) }
        let code = errno
        guard code == EINPROGRESS || code == EINTR || code == EAGAIN else { throw failure(address, "connect", code) }
        return (sock, false)
    }

    /// After POLLOUT (or an error) on a socket `startConnect` left connecting: whether it connected.
    public func finishConnect() throws(ConnectFailure) {
        guard let address else { return }
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) < 0 { throw Socket.failure(address, "getsockopt", errno) }
        if soError != 0 { throw Socket.failure(address, "connect", soError) }
    }

    private static func failure(_ address: SocketAddress, _ step: String, _ code: Int32) -> ConnectFailure {
        .system(network: address.family == AF_UNIX ? "unix" : "tcp", address: address, step: step, errno: Errno(code))
    }

    /// A listening socket this process was given: a descriptor inherited across exec, whose
    /// open file (non-blocking already) is shared with the process that bound it; made
    /// close-on-exec again, so that nothing this process starts inherits it.
    public static func adopt(listening fd: Int32) -> Socket {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return Socket(fd: fd)
    }

    /// What a listener's next accept gave.
    public enum Accepted {
        case connection(Socket)
        /// No connection waits.
        case none
        /// The process or the system is out of descriptors (or of the memory a socket needs):
        /// the connection stays pending, and the listener readable.
        case exhausted(Errno)
        /// This connection failed (it was aborted before it was taken): the next may not.
        case failed(Errno)
    }

    /// The next pending connection, non-blocking, told apart from why there is none.
    public func acceptNext() -> Accepted {
        let client = retryingOnInterrupt { cshim_accept(fd) }
        if client >= 0 {
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return .connection(Socket(fd: client))
        }
        let code = errno
        switch code {
        case EAGAIN, EWOULDBLOCK: return .none
        case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .exhausted(Errno(code))
        default: return .failed(Errno(code))
        }
    }

    /// The pid of the process that called listen(2) on the other end of a connected unix
    /// socket (or connect(2), on an accepted one), as this process's PID namespace numbers it:
    /// 0 when that process is outside the namespace, -1 when it cannot be known.
    public var peerProcessID: Int32 { cshim_peer_pid(fd) }

    /// What connecting a unix stream socket gave: it connects at once or not at all.
    public enum UnixConnect {
        case connected(Socket)
        /// The listener's backlog is full (EAGAIN): it may accept later.
        case backlogFull
        /// Nobody listens there (ECONNREFUSED, ENOENT), or another failure.
        case failed(Errno)
    }

    /// Connects to a unix stream socket without waiting; a full backlog is told apart, not
    /// taken for a connection in progress.
    public static func connectUnix(to address: SocketAddress) -> UnixConnect {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failed(.current) }
        let sock = Socket(fd: fd, address: address)
        if retryingOnInterrupt({ address.withSockaddr { Glibc.connect(fd, $0, $1) } }) == 0 { return .connected(sock) }
        let code = errno
        return code == EAGAIN || code == EWOULDBLOCK ? .backlogFull : .failed(Errno(code))
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        let n = retryingOnInterrupt { Glibc.read(fd, buffer.baseAddress, buffer.count) }
        if n > 0 { return .bytes(n) }
        if n == 0 { return .endOfStream }
        return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed(.system(operation: "read", errno: .current))
    }

    /// Writes as much as the socket takes now.
    public func write(_ bytes: UnsafeRawBufferPointer) -> WriteResult {
        let n = retryingOnInterrupt { send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
        if n >= 0 { return .wrote(n) }
        if errno == EAGAIN || errno == EWOULDBLOCK { return .wrote(0) }
        return .failed(.system(operation: "write", errno: .current))
    }
}
