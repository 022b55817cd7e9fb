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

    /// The longest line written whole: pipes take writes of up to PIPE_BUF bytes at once or not
    /// at all, so lines from several processes never interleave.
    public static let maxLine = 4096

    public init(fd: Int32) {
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
        var bytes: [UInt8] = []
        if midLine { bytes.append(0x0A) }
        if dropped > 0 {
            bytes.append(contentsOf: "[grpc-init] warning: \(dropped) log line\(dropped == 1 ? "" : "s") dropped: stderr was not being read\n".utf8)
        }
        var body = Array(text.utf8)
        let room = LogStream.maxLine - bytes.count - 1
        if body.count > room { body = Array(body.prefix(room - 3)) + Array("...".utf8) }
        bytes.append(contentsOf: body)
        bytes.append(0x0A)
        switch write(bytes) {
        case .all:
            dropped = 0
            midLine = false
        case .none:
            dropped += 1
        case .part:
            dropped += 1
            midLine = true
        }
    }

    private enum Written { case all, part, none }

    private func write(_ bytes: [UInt8]) -> Written {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let rest = raw.count - offset
                let n: Int
                switch writer {
                case .closed:
                    return .none
                case .direct(let fd):
                    n = retryingOnInterrupt { Glibc.write(fd, raw.baseAddress! + offset, rest) }
                case .socket(let fd):
                    n = retryingOnInterrupt { send(fd, raw.baseAddress! + offset, rest, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                case .polled(let fd):
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    guard poll(&pfd, 1, 0) == 1, pfd.revents & Int16(POLLOUT) != 0 else { return offset == 0 ? .none : .part }
                    n = retryingOnInterrupt { Glibc.write(fd, raw.baseAddress! + offset, rest) }
                }
                if n < 0 {
                    if errno == EPIPE {
                        // Nobody reads the log any more. The SIGPIPE this write raised is ours, not
                        // one to forward to the child (forwarding it, then logging that, looped).
                        cshim_discard_own_sigpipe()
                        writer = .closed
                    }
                    return offset == 0 ? .none : .part
                }
                if n == 0 { return offset == 0 ? .none : .part }
                offset += n
            }
            return .all
        }
    }
}
