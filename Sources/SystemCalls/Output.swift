import Glibc

/// Unbuffered writes to the standard streams, one whole line per write(2) so that lines from
/// several processes never interleave mid-line.
public enum Output {
    public static func line(_ text: String, to fd: Int32 = STDERR_FILENO) {
        var bytes = Array(text.utf8)
        bytes.append(0x0A)
        writeAll(fd, bytes)
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = retryingOnInterrupt { write(fd, raw.baseAddress! + offset, raw.count - offset) }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
