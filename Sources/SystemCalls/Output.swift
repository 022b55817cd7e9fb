import CShim
import Glibc

/// Unbuffered writes to the standard streams, one whole line per write(2) so that lines from
/// several processes never interleave mid-line.
public enum Output {
    public static func line(_ text: String, to fd: Int32 = STDERR_FILENO) {
        var bytes = Array(text.utf8)
        bytes.append(0x0A)
        writeAll(fd, bytes)
    }

    /// Descriptors (below 64) whose reader has gone (EPIPE): nothing more is written to them.
    /// A bit mask, not a Set: this is on every probe's path, and stays cheap to fault in.
    nonisolated(unsafe) private static var closedStreams: UInt64 = 0

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        if fd < 64 && closedStreams & (1 << UInt64(fd)) != 0 { return }
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = retryingOnInterrupt { write(fd, raw.baseAddress! + offset, raw.count - offset) }
                if n < 0 && errno == EPIPE {
                    // Nobody reads our log any more. The SIGPIPE this write raised is ours, not one
                    // to forward to the child (forwarding it, then logging that, looped).
                    if fd < 64 { closedStreams |= 1 << UInt64(fd) }
                    cshim_discard_own_sigpipe()
                    return
                }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
