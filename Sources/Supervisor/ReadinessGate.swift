import CShim
import Flags
import Glibc
import SystemCalls

/// What -ready-addr and its companions ask for.
public struct ReadinessOptions: Equatable, Sendable {
    public static let defaultInterval = GoDuration(nanoseconds: 250_000_000)

    public var addr: String
    public var service: String
    public var interval: GoDuration
    public var file: String

    public init(addr: String, service: String = "", interval: GoDuration = defaultInterval, file: String = "") {
        self.addr = addr
        self.service = service
        self.interval = interval
        self.file = file
    }
}

/// The readiness gate: grpc_health_probe attempts against the child, each our own binary run as
/// the probe (a process of its own, so the supervisor stays small), one `interval` after the
/// last, until one reports SERVING. Then it tells: a log line, the -ready-file, and READY=1 to
/// the service manager's NOTIFY_SOCKET. No attempt follows: an idle supervisor wakes for nothing.
final class ReadinessGate {
    let options: ReadinessOptions
    private let log: SupervisorLog
    private let notifySocket: String?
    private let started = MonotonicClock.now()
    /// The attempt in flight, and the read end of the pipe holding what it printed.
    private var attempt: (pid: pid_t, output: Int32)? = nil
    private var nextAttempt: Int64
    private var attempts = 0
    private var lastFailure = ""
    /// Probing until ready; done once ready, or once the child exited or probing cannot succeed.
    private var probing = true

    /// Takes NOTIFY_SOCKET from the environment, so that the child does not inherit it: the
    /// gate says READY=1, not a server that may call itself ready before it serves.
    init(options: ReadinessOptions, log: SupervisorLog) {
        self.options = options
        self.log = log
        notifySocket = Environment.value("NOTIFY_SOCKET").flatMap { $0.isEmpty ? nil : $0 }
        unsetenv("NOTIFY_SOCKET")
        nextAttempt = MonotonicClock.now()
        executable = ReadinessGate.ownExecutable()
        // A ready file left by an earlier run (an emptyDir outlives a container restart) would
        // claim readiness this run has not seen.
        if !options.file.isEmpty && unlink(options.file) != 0 && errno != ENOENT {
            log.warning("cannot remove the stale ready file \(options.file): \(SystemError.describe(errno))")
        }
    }

    /// The path that runs this binary again: /proc/self/exe, or without /proc the path it was
    /// started by (AT_EXECFN).
    private let executable: String

    private static func ownExecutable() -> String {
        if access("/proc/self/exe", X_OK) == 0 { return "/proc/self/exe" }
        guard let path = cshim_exec_path() else { return "/proc/self/exe" }
        return String(cString: path)
    }

    /// When the gate wants to run next; nil while an attempt runs, and once it is done.
    var deadline: Int64? { probing && attempt == nil ? nextAttempt : nil }

    /// Starts an attempt if one is due.
    func tick(now: Int64, mask: sigset_t) {
        guard let due = deadline, now >= due else { return }
        var pipeFDs: [Int32] = [-1, -1]
        guard cshim_pipe_cloexec(&pipeFDs) == 0 else {
            log.warning("readiness probe: pipe: \(SystemError.describe(errno))")
            nextAttempt = MonotonicClock.deadline(after: options.interval.nanoseconds)
            return
        }
        var arguments = ["grpc_health_probe", "-addr", options.addr, "-user-agent", "grpc-init-readiness"]
        if !options.service.isEmpty { arguments += ["-service", options.service] }
        var cArgs: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var childMask = mask
        let pid = cshim_spawn_with_output(executable, &cArgs, &childMask, pipeFDs[1])
        close(pipeFDs[1])
        if pid < 0 {
            log.warning("readiness probe: fork: \(SystemError.describe(errno))")
            close(pipeFDs[0])
            nextAttempt = MonotonicClock.deadline(after: options.interval.nanoseconds)
            return
        }
        attempts += 1
        attempt = (pid, pipeFDs[0])
    }

    /// Takes an exited process if it is the attempt in flight; returns whether it was.
    func reaped(_ pid: pid_t, status: Int32) -> Bool {
        guard let current = attempt, current.pid == pid else { return false }
        attempt = nil
        // The probe prints a line or two; its output has all been written once it exited.
        let output = String(decoding: (try? Files.read(descriptor: current.output, limit: 1 << 16, name: "readiness probe output")) ?? [],
                            as: UTF8.self)
        close(current.output)
        guard probing else { return true }
        let exit = WaitStatus(status)
        if exit.exitCode == 0 {
            probing = false
            becameReady()
            return true
        }
        // The probe's own line says why (a refused connection, NOT_SERVING, ...); with -v each new
        // reason is logged once.
        let reason = output.split(separator: "\n").last.map(String.init) ?? exit.description
        if reason != lastFailure {
            lastFailure = reason
            log.info("not ready yet (\(options.addr)): \(reason)")
        }
        if exit.exitCode == 127 && output.isEmpty && attempts == 1 {
            log.warning("readiness probe cannot run: exec \(executable) failed")
        }
        if exit.exitCode == 1 {
            // Invalid arguments (an -addr the probe refuses): no later attempt can succeed.
            log.warning("readiness gate stopped: the probe refuses -ready-addr \(options.addr): \(reason)")
            probing = false
            return true
        }
        nextAttempt = MonotonicClock.deadline(after: options.interval.nanoseconds)
        return true
    }

    /// The child has exited: no more attempts, and the one in flight is ended and reaped.
    func stop() {
        probing = false
        guard let current = attempt else { return }
        kill(current.pid, SIGKILL)
        var status: Int32 = 0
        _ = retryingOnInterrupt { waitpid(current.pid, &status, 0) }
        _ = reaped(current.pid, status: status)
    }

    private func becameReady() {
        let took = GoDuration(nanoseconds: MonotonicClock.now() - started)
        // The file and the notification first: whoever reads the line may rely on them.
        if !options.file.isEmpty {
            let fd = open(options.file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 {
                log.warning("cannot create the ready file \(options.file): \(SystemError.describe(errno))")
            } else {
                let text = Array("SERVING\n".utf8)
                _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
        }
        if let notifySocket, cshim_notify_socket(notifySocket, "READY=1\nSTATUS=\(options.addr) reports SERVING") != 0 {
            log.warning("cannot notify \(notifySocket) (NOTIFY_SOCKET): \(SystemError.describe(errno))")
        }
        let service = options.service.isEmpty ? "" : " (service \(goQuote(options.service)))"
        log.event("ready: \(options.addr)\(service) reports SERVING, \(took) after start, probe \(attempts)")
    }
}
