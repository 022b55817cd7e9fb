import CShim
import Glibc

/// An open descriptor and the duty to close it, held by one owner at a time: it cannot be
/// copied, only moved, so it is closed exactly once on every path. `close()` closes it and says
/// how that went; an owner that goes out of scope without calling it (an early return, a
/// thrown error) closes it in its deinit. `release()` hands the bare number on without closing
/// it, for a descriptor whose duty passes elsewhere.
public struct FileDescriptor: ~Copyable {
    public let rawValue: Int32

    /// Takes the duty to close `rawValue`, an open descriptor.
    public init(owning rawValue: Int32) { self.rawValue = rawValue }

    deinit {
        // No one to tell at a scope's end. Linux releases the descriptor whatever close(2)
        // returns (EINTR and EIO included), so it is closed exactly once either way; an owner
        // that wants the result calls close().
        _ = Glibc.close(rawValue)
    }

    /// Closes it; a failure (EIO: data that did not reach the device) is thrown, the descriptor
    /// is released all the same.
    public consuming func close() throws(SystemError) {
        let fd = rawValue
        discard self
        if Glibc.close(fd) != 0 { throw SystemError("close") }
    }

    /// The number, no longer owned here: whoever receives it closes it.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// Runs `body` with the descriptor, then closes it, whatever `body` did. The error `body`
    /// threw is the one thrown (the close's is then lost: it said less); when `body` returned,
    /// a failed close is thrown.
    public consuming func closeAfter<R>(_ body: (borrowing FileDescriptor) throws(SystemError) -> R) throws(SystemError) -> R {
        let result: R
        do {
            result = try body(self)
        } catch {
            // The error that says what went wrong first is the one the caller gets.
            try? self.close()
            throw error
        }
        try self.close()
        return result
    }

    /// open(2), close-on-exec.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        let fd = try check("open") { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(owning: fd)
    }

    /// One write(2) (again after EINTR): the bytes it took. A write that raised SIGPIPE (EPIPE,
    /// in a process that reads its signals from a signalfd) takes that SIGPIPE back, so that
    /// it is not read as a signal to forward.
    public func write(_ bytes: some Collection<UInt8>) throws(SystemError) -> Int {
        let array = Array(bytes)
        let n = array.withUnsafeBytes { raw in retryingOnInterrupt { Glibc.write(rawValue, raw.baseAddress, raw.count) } }
        if n < 0 {
            let failure = SystemError("write")
            if failure.code.rawValue == EPIPE { cshim_discard_own_sigpipe() }
            throw failure
        }
        return n
    }

    /// A close-on-exec pipe, the end `nonblocking` (0: the read end, 1: the write end) not
    /// blocking; the other end is an ordinary one, for a helper to inherit.
    public static func pipe(nonblockingEnd end: Int32) throws(SystemError) -> PipeEnds {
        var fds: [Int32] = [-1, -1]
        try check("pipe") { cshim_pipe_nonblocking_end(&fds, end) }
        return PipeEnds(read: FileDescriptor(owning: fds[0]), write: FileDescriptor(owning: fds[1]))
    }
}

/// The two ends of a pipe, each owned; each may be taken on its own (frozen: a field of a
/// non-copyable type from another module can be consumed alone only then).
@frozen
public struct PipeEnds: ~Copyable {
    public var read: FileDescriptor
    public var write: FileDescriptor

    public init(read: consuming FileDescriptor, write: consuming FileDescriptor) {
        self.read = read
        self.write = write
    }
}
