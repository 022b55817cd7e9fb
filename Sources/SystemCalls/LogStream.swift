import CShim
import Glibc

/// A log that never blocks its writer. The supervisor logs between a signal and its forwarding,
/// and a container's log pipe can stall (a reader that stopped reading): a blocked write there
/// would stop supervision. A line that cannot be written at once is dropped and counted, and the
/// count is reported in front of the next line that can.
///
/// The standard error descriptor itself stays blocking: it is shared with the child, and
/// O_NONBLOCK on it would hand the child EAGAIN. A pipe or terminal is opened again through
/// /proc/self/fd, which gives a description of our own to make non-blocking; a socket is
/// written with MSG_DONTWAIT; a regular file does not block.
public final class LogStream {
    private enum Writer {
        /// Writes that cannot block (a regular file), or a description of our own, non-blocking.
        case direct(Int32)
        case socket(Int32)
        /// Neither was possible (no /proc): write only when poll(2) says there is room. Another
        /// writer can take that room in between, so this can still block, rarely and briefly.
        case polled(Int32)
        case closed
    }

    private var writer: Writer
    /// Lines dropped since the last one written.
    public private(set) var dropped = 0
    /// A line was cut short by a full pipe: the next write starts a new line first.
    private var midLine = false
    /// With `completesCutLines`: the rest of a line a socket took only in part, written before
    /// anything else (a line is whole or absent, never cut short).
    private var unfinished: [UInt8] = []
    private let completesCutLines: Bool
    /// The line that says how many were dropped, in the log's format.
    private let droppedNotice: (Int) -> String

    /// The longest line written whole: pipes take writes of up to PIPE_BUF bytes at once or not
    /// at all, so lines from several processes never interleave.
    public static let maxLine = 4096

    /// What the notice about dropped lines says.
    public static func droppedMessage(_ count: Int) -> String {
        "\(count) log line\(count == 1 ? "" : "s") dropped: stderr was not being read"
    }

    /// `completesCutLines`: a line a socket takes only in part (a pipe takes a line whole or not
    /// at all) is finished before the next one, instead of ended by a newline; for lines a
    /// reader parses (JSON), where half a line would be an invalid one.
    public init(fd: Int32, completesCutLines: Bool = false,
                droppedNotice: @escaping (Int) -> String = { "[grpc-init] warning: " + LogStream.droppedMessage($0) }) {
        self.completesCutLines = completesCutLines
        self.droppedNotice = droppedNotice
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            writer = .closed
            return
        }
        switch status.st_mode & S_IFMT {
        case S_IFREG:
            writer = .direct(fd)
        case S_IFSOCK:
            writer = .socket(fd)
        default:
            let own = open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
            writer = own >= 0 ? .direct(own) : .polled(fd)
        }
    }

    public func line(_ text: String) {
        var bytes: [UInt8] = unfinished
        let before = bytes.count
        if midLine { bytes.append(0x0A) }
        if dropped > 0 {
            bytes.append(contentsOf: droppedNotice(dropped).utf8)
            bytes.append(0x0A)
        }
        var body = Array(text.utf8)
        let room = LogStream.maxLine - (bytes.count - before) - 1
        if body.count > room { body = Array(body.prefix(room - 3)) + Array("...".utf8) }
        bytes.append(contentsOf: body)
        bytes.append(0x0A)
        let written = write(bytes)
        if completesCutLines {
            if written <= before {
                // Nothing of this line went out (at most the rest of the last one): dropped.
                unfinished.removeFirst(written)
                dropped += 1
            } else {
                // The notice and this line went out, or will before anything else does.
                unfinished = Array(bytes[written...])
                dropped = 0
            }
            return
        }
        if written == bytes.count {
            dropped = 0
            midLine = false
        } else {
            dropped += 1
            if written > 0 { midLine = true }
        }
    }

    /// While the rest of a line cut short waits: the descriptor to poll for room (POLLOUT).
    public var waitingDescriptor: Int32? {
        guard !unfinished.isEmpty else { return nil }
        switch writer {
        case .direct(let fd), .socket(let fd), .polled(let fd): return fd
        case .closed: return nil
        }
    }

    /// The descriptor has room: more of the rest of the line cut short goes out.
    public func writable() {
        guard !unfinished.isEmpty else { return }
        unfinished.removeFirst(write(unfinished))
        if case .closed = writer { unfinished = [] }
    }

    /// The rest of a line cut short (`completesCutLines`), written as the descriptor takes it
    /// within `nanoseconds`; past that it stays unwritten. Nothing to do otherwise.
    public func finish(within nanoseconds: Int64) {
        guard !unfinished.isEmpty else { return }
        let fd: Int32
        switch writer {
        case .direct(let own), .socket(let own), .polled(let own): fd = own
        case .closed: return
        }
        let deadline = MonotonicClock.deadline(after: nanoseconds)
        // Each round waits for room until the deadline and writes what the descriptor takes.
        for _ in 0..<64 where !unfinished.isEmpty {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard retryingOnInterrupt({ poll(&pfd, 1, MonotonicClock.pollTimeout(until: deadline)) }) == 1 else { return }
            unfinished.removeFirst(write(unfinished))
        }
    }

    /// Writes what it can without blocking; returns how many bytes went out.
    private func write(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let rest = raw.count - offset
                let n: Int
                switch writer {
                case .closed:
                    return offset
                case .direct(let fd):
                    n = retryingOnInterrupt { Glibc.write(fd, raw.baseAddress! + offset, rest) }
                case .socket(let fd):
                    n = retryingOnInterrupt { send(fd, raw.baseAddress! + offset, rest, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                case .polled(let fd):
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    guard poll(&pfd, 1, 0) == 1, pfd.revents & Int16(POLLOUT) != 0 else { return offset }
                    n = retryingOnInterrupt { Glibc.write(fd, raw.baseAddress! + offset, rest) }
                }
                if n < 0 {
                    if errno == EPIPE {
                        // Nobody reads the log any more. The SIGPIPE this write raised is ours, not
                        // one to forward to the child (forwarding it, then logging that, looped).
                        cshim_discard_own_sigpipe()
                        writer = .closed
                    }
                    return offset
                }
                if n == 0 { return offset }
                offset += n
            }
            return offset
        }
    }
}
