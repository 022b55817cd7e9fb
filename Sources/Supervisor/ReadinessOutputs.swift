import CShim
import Glibc
import SystemCalls

/// Where readiness is told besides the log: the -ready-file (present while the child reports
/// SERVING) and NOTIFY_SOCKET (sd_notify(3): READY=1, STATUS=, STOPPING=1, WATCHDOG=1).
final class ReadinessOutputs {
    let file: String
    /// WATCHDOG_USEC, when the watchdog is grpc-init's to keep.
    let watchdogUsec: Int64?
    let notifier: Notifier?
    private let log: SupervisorLog
    /// The errno of the ready file's last failure said: the same failure again (a server flapping
    /// with the file's directory read-only) is not said again until an operation succeeds.
    private var fileFailure: Errno?

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
        notifier = socket.map { Notifier(path: $0, log: log) }
        var usec: Int64? = nil
        if socket != nil, let text = Environment.value("WATCHDOG_USEC"), let value = Int64(text), value > 0,
           Environment.value("WATCHDOG_PID").map({ $0 == String(getpid()) }) ?? true {
            usec = value
        }
        watchdogUsec = usec
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if unsetenv(name) != 0 {
                let code = Errno.current
                log.warning("cannot unset \(name): \(code)", [.string("variable", name), .error(code)])
            }
        }
        if !file.isEmpty { unlinkFile("remove the stale ready file") }
    }

    func createFile() {
        guard !file.isEmpty else { return }
        let text = Array("SERVING\n".utf8)
        do throws(SystemError) {
            let fd = try FileDescriptor.open(file, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOCTTY)
            try fd.closeAfter { fd throws(SystemError) in
                let written = try fd.write(text)
                // Eight bytes to a file take one write; a short one means no room for the rest.
                if written != text.count { throw SystemError("write (\(written) of \(text.count) bytes)", code: Errno(ENOSPC)) }
            }
        } catch {
            return fileFailed("create the ready file", error)
        }
        fileWorked()
    }

    func removeFile() {
        guard !file.isEmpty else { return }
        unlinkFile("remove the ready file")
    }

    private func unlinkFile(_ doing: String) {
        if unlink(file) == 0 { return fileWorked() }
        // No file is what removing it wants: neither a failure nor proof that the file works.
        if errno == ENOENT { return }
        fileFailed(doing, SystemError("unlink"))
    }

    private func fileFailed(_ doing: String, _ error: SystemError) {
        guard error.code != fileFailure else { return }
        fileFailure = error.code
        log.warning("cannot \(doing) \(file): \(error) (said once until the file works again)", [.string("path", file), .error(error)])
    }

    private func fileWorked() {
        guard fileFailure != nil else { return }
        fileFailure = nil
        log.event("the ready file \(file) works again", [.string("path", file)])
    }

    func notify(_ notification: Notifier.Notification) { notifier?.send(notification) }
}

/// NOTIFY_SOCKET, written without ever waiting. A reader that stops reading fills its queue;
/// a blocking send would then stop PID 1 (no signal forwarded, no child reaped). Here a send
/// that finds the queue full keeps what must still arrive — READY=1 and STOPPING=1 once each,
/// the latest STATUS=, a watchdog ping — and sends it as one datagram when poll(2) says the
/// queue has room again. One warning when the reader stalls and one line when it reads again,
/// with how many notifications were held back meanwhile.
final class Notifier {
    enum Notification: Equatable {
        /// READY=1 with the status that made it so.
        case ready(status: String)
        case status(String)
        case stopping
        case watchdog
    }

    let path: String
    private let log: SupervisorLog
    /// Connected to the reader's socket; nil until a send needs it, and after a failure.
    private var socket: FileDescriptor? = nil
    /// What has not reached the reader yet.
    private var ready = false
    private var status: String?
    private var stopping = false
    private var watchdog = false
    /// The reader's queue was full at the last send: what is pending waits for POLLOUT.
    private var stalled = false
    /// Notifications held back since the reader stalled.
    private var heldBack = 0
    /// The last failure other than a full queue, said once until a send succeeds.
    private var lastFailure: Int32 = 0

    init(path: String, log: SupervisorLog) {
        self.path = path
        self.log = log
    }

    /// Something is waiting for the reader: the supervisor polls this for POLLOUT.
    var waitingDescriptor: Int32? { stalled ? socket?.rawValue : nil }

    func send(_ notification: Notification) {
        switch notification {
        case .ready(let text):
            ready = true
            status = text
        case .status(let text): status = text
        case .stopping: stopping = true
        case .watchdog: watchdog = true
        }
        if !stalled { flush() }
        if stalled { heldBack += 1 }
    }

    /// The reader's queue has room (or the poll said the socket failed): try again.
    func writable() { flush() }

    private var datagram: [UInt8] {
        var lines: [String] = []
        if ready { lines.append("READY=1") }
        if let status { lines.append("STATUS=" + status.replacingNewlines) }
        if stopping { lines.append("STOPPING=1") }
        if watchdog { lines.append("WATCHDOG=1") }
        return Array(lines.joined(separator: "\n").utf8)
    }

    private func flush() {
        let bytes = datagram
        guard !bytes.isEmpty else { return }
        // One reconnect: the reader may have bound its socket anew since the last send.
        for attempt in 0..<2 {
            if socket == nil {
                let connected = cshim_notify_connect(path)
                if connected < 0 { return failed(errno) }
                socket = FileDescriptor(owning: connected)
            }
            guard let fd = socket?.rawValue else { return }
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if sent >= 0 { return delivered() }
            let code = errno
            if code == EAGAIN || code == EWOULDBLOCK {
                if !stalled {
                    log.warning("NOTIFY_SOCKET \(path) is not being read: READY=1, STOPPING=1, the latest STATUS= and one WATCHDOG=1 wait for it, sent as one datagram when it reads; nothing else waits",
                                [.string("path", path)])
                }
                stalled = true
                return
            }
            if code == EINTR { continue }
            socket = nil
            if attempt == 1 || (code != ECONNREFUSED && code != ENOTCONN && code != ECONNRESET) { return failed(code) }
        }
    }

    private func delivered() {
        if stalled {
            log.event("NOTIFY_SOCKET \(path) is read again: \(heldBack) notification\(heldBack == 1 ? "" : "s") held back, sent as one",
                      [.string("path", path), .integer("held", heldBack)])
        }
        stalled = false
        heldBack = 0
        lastFailure = 0
        ready = false
        status = nil
        stopping = false
        watchdog = false
    }

    /// The reader is gone or unreachable: what was to be said is dropped (a reader that comes
    /// back gets the next notification), and the failure is said once.
    private func failed(_ code: Int32) {
        if code != lastFailure { log.warning("cannot notify \(path) (NOTIFY_SOCKET): \(Errno(code))", [.string("path", path), .error(Errno(code))]) }
        lastFailure = code
        stalled = false
        heldBack = 0
        ready = false
        status = nil
        stopping = false
        watchdog = false
    }
}

extension String {
    /// A STATUS= value is one line of the datagram: a newline inside it would start another
    /// assignment.
    fileprivate var replacingNewlines: String {
        guard utf8.contains(0x0A) else { return self }
        return String(decoding: utf8.map { $0 == 0x0A ? 0x20 : $0 }, as: UTF8.self)
    }
}
