import CShim
import Glibc
import SystemCalls

/// Where readiness is told besides the log: the -ready-file (present while the child reports
/// SERVING) and NOTIFY_SOCKET (sd_notify(3): READY=1, STATUS=, STOPPING=1, WATCHDOG=1).
struct ReadinessOutputs {
    let file: String
    let notifySocket: String?
    /// WATCHDOG_USEC, when the watchdog is grpc-init's to keep.
    let watchdogUsec: Int64?
    private let log: SupervisorLog

    /// Takes NOTIFY_SOCKET and the watchdog's variables from the environment, so that the child
    /// does not inherit them: the gate says READY=1, not a server that may call itself ready
    /// before it serves, and the child's pings would say nothing of its health. The watchdog is
    /// ours when WATCHDOG_PID is unset or names grpc-init. A ready file left by an earlier run
    /// (an emptyDir outlives a container restart) would claim readiness this run has not seen:
    /// it goes.
    init(file: String, log: SupervisorLog) {
        self.file = file
        self.log = log
        let socket = Environment.value("NOTIFY_SOCKET").flatMap { $0.isEmpty ? nil : $0 }
        notifySocket = socket
        var usec: Int64? = nil
        if socket != nil, let text = Environment.value("WATCHDOG_USEC"), let value = Int64(text), value > 0,
           Environment.value("WATCHDOG_PID").map({ $0 == String(getpid()) }) ?? true {
            usec = value
        }
        watchdogUsec = usec
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { unsetenv(name) }
        if !file.isEmpty && unlink(file) != 0 && errno != ENOENT {
            log.warning("cannot remove the stale ready file \(file): \(Errno.current)")
        }
    }

    func createFile() {
        guard !file.isEmpty else { return }
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 {
            log.warning("cannot create the ready file \(file): \(Errno.current)")
            return
        }
        let text = Array("SERVING\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    func removeFile() {
        guard !file.isEmpty else { return }
        if unlink(file) != 0 && errno != ENOENT {
            log.warning("cannot remove the ready file \(file): \(Errno.current)")
        }
    }

    func notify(_ message: String) {
        guard let notifySocket else { return }
        if cshim_notify_socket(notifySocket, message) != 0 {
            log.warning("cannot notify \(notifySocket) (NOTIFY_SOCKET): \(Errno.current)")
        }
    }
}
