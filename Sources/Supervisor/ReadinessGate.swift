import Addressing
import CShim
import Flags
import Glibc
import SystemCalls

/// What the -ready flags ask for.
public struct ReadinessOptions: Equatable, Sendable {
    public static let defaultInterval = GoDuration(nanoseconds: 250_000_000)

    /// Empty: the agent finds the server's port itself.
    public var addr = ""
    public var service = ""
    public var interval = defaultInterval
    public var file = ""
    public var tls = TLSFlags()
    public var spiffe = false
    public var rpcHeaders: [String] = []
    public var connectTimeout = GoDuration.second
    public var rpcTimeout = GoDuration.second
    /// Not ready this long after start: stop the child (zero: wait for ever).
    public var startupTimeout = GoDuration(nanoseconds: 0)
    /// -health-addr: where the agent answers kubelet's native probes (empty: nowhere).
    public var healthAddr = ""

    public init() {}

    /// The agent's arguments: the Check interval, then probe flags.
    var agentArguments: [String] {
        var a = ["-interval", interval.description]
        a += ["--", "-user-agent", "grpc-init-health",
                 "-connect-timeout", connectTimeout.description, "-rpc-timeout", rpcTimeout.description]
        if !addr.isEmpty { a += ["-addr", addr] }
        if !service.isEmpty { a += ["-service", service] }
        if tls.tls { a.append("-tls") }
        if tls.noVerify { a.append("-tls-no-verify") }
        for (flag, value) in [("-tls-ca-cert", tls.caCert), ("-tls-client-cert", tls.clientCert),
                              ("-tls-client-key", tls.clientKey), ("-tls-server-name", tls.serverName)] where !value.isEmpty {
            a += [flag, value]
        }
        if spiffe { a.append("-spiffe") }
        for header in rpcHeaders { a += ["-rpc-header", header] }
        return a
    }
}

/// The supervisor's side of the readiness gate. The health agent, our own binary run as a
/// process of its own, does the network work and reports each change over a pipe; this side
/// tells the world: the log lines, the -ready-file, READY=1 and STATUS= on NOTIFY_SOCKET. It
/// never waits on the agent: its reports are read as they come, and if it dies it is started
/// again after a pause that doubles with each death.
final class ReadinessGate {
    let options: ReadinessOptions
    private let log: SupervisorLog
    private let notifySocket: String?
    private let started = MonotonicClock.now()
    private let executable: String

    private struct Agent {
        let pid: pid_t
        /// The read end of its report pipe; -1 once it reached end of file.
        var output: Int32
        /// The write end of its control pipe (its stdin), when it serves -health-addr; -1 if not.
        let control: Int32
    }
    /// SIGTERM arrived with -drain-delay: the endpoint answers "draining" (a restarted agent is
    /// told again), and SERVING reports no longer make the child ready.
    private var draining = false
    private var agent: Agent? = nil
    /// When to start the agent (again); nil while one runs, and once the gate stopped.
    private var startAt: Int64?
    /// When the agent died lately (within `deathWindow`), oldest first.
    private var deaths: [Int64] = []
    /// -health-addr's listening socket: bound here, handed to each agent as descriptor 3, so
    /// the port stays bound across an agent's restart and clients wait in its backlog.
    private var healthListener: Int32 = -1
    /// A partial report line, waiting for its newline.
    private var partial: [UInt8] = []
    private var discarding = false
    private var serving = false
    private var everReady = false
    private var lastReason = "no report from the health agent yet"
    private var stopped = false
    private var timeoutReported = false

    /// A dead agent is started again at once this many times within `deathWindow`; past that,
    /// after `restarts` (100 ms doubling to 30 s): a crash costs milliseconds, a crash loop
    /// does not spin.
    static let immediateRestarts = 3
    static let deathWindow: Int64 = 60_000_000_000
    static let restarts = Backoff(first: 100_000_000, maximum: 30_000_000_000)

    /// Takes NOTIFY_SOCKET from the environment, so that the child does not inherit it: the
    /// gate says READY=1, not a server that may call itself ready before it serves.
    init(options: ReadinessOptions, log: SupervisorLog) {
        self.options = options
        self.log = log
        notifySocket = Environment.value("NOTIFY_SOCKET").flatMap { $0.isEmpty ? nil : $0 }
        unsetenv("NOTIFY_SOCKET")
        executable = ReadinessGate.ownExecutable()
        startAt = MonotonicClock.now()
        // A ready file left by an earlier run (an emptyDir outlives a container restart) would
        // claim readiness this run has not seen.
        if !options.file.isEmpty && unlink(options.file) != 0 && errno != ENOENT {
            log.warning("cannot remove the stale ready file \(options.file): \(SystemError.describe(errno))")
        }
    }

    /// The path that runs this binary again: /proc/self/exe, or without /proc the path it was
    /// started by (AT_EXECFN).
    private static func ownExecutable() -> String {
        if access("/proc/self/exe", X_OK) == 0 { return "/proc/self/exe" }
        guard let path = cshim_exec_path() else { return "/proc/self/exe" }
        return String(cString: path)
    }

    /// Binds -health-addr, before the child starts: a port that cannot be had is known at once.
    /// Returns why it failed.
    func listenForHealth() -> String? {
        guard !options.healthAddr.isEmpty, let address = ListenAddress.parse(options.healthAddr) else { return nil }
        var step: UnsafePointer<CChar>? = nil
        let fd = cshim_listen_tcp(address.host, address.port, 128, &step)
        guard fd >= 0 else { return "\(step.map { String(cString: $0) } ?? "listen"): \(SystemError.describe(errno))" }
        healthListener = fd
        return nil
    }

    /// The report pipe, for the supervisor's poll.
    var descriptor: Int32? { agent.flatMap { $0.output >= 0 ? $0.output : nil } }

    /// When the gate wants to run next: to start the agent, or to give up on readiness.
    var deadline: Int64? {
        [startAt, readyDeadline].compactMap { $0 }.min()
    }

    /// When -ready-timeout gives up, while it still may.
    private var readyDeadline: Int64? {
        guard options.startupTimeout.nanoseconds > 0, !everReady, !timeoutReported, !stopped else { return nil }
        return started + options.startupTimeout.nanoseconds
    }

    /// Starts the agent when it is due. Returns the reason when -ready-timeout passed without
    /// readiness (once): the supervisor then stops the child.
    func tick(now: Int64, mask: sigset_t) -> String? {
        if let due = startAt, now >= due, !stopped { spawn(mask: mask) }
        if let limit = readyDeadline, now >= limit {
            timeoutReported = true
            return lastReason
        }
        return nil
    }

    private func spawn(mask: sigset_t) {
        startAt = nil
        var pipeFDs: [Int32] = [-1, -1]
        guard cshim_pipe_nonblocking_end(&pipeFDs, 0) == 0 else {
            log.warning("cannot start the health agent: pipe: \(SystemError.describe(errno))")
            scheduleRestart()
            return
        }
        var controlFDs: [Int32] = [-1, -1]
        if !options.healthAddr.isEmpty && cshim_pipe_nonblocking_end(&controlFDs, 1) != 0 {
            log.warning("cannot start the health agent: pipe: \(SystemError.describe(errno))")
            close(pipeFDs[0])
            close(pipeFDs[1])
            scheduleRestart()
            return
        }
        // The health port goes down as descriptor 3: the agent serves on it, never binds.
        let arguments = ["grpc-init-agent"] + (healthListener >= 0 ? ["-health-fd", "3"] : []) + options.agentArguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var childMask = mask
        let pid = cshim_spawn_helper(executable, &cArgs, &childMask, pipeFDs[1], controlFDs[0], healthListener)
        close(pipeFDs[1])
        if controlFDs[0] >= 0 { close(controlFDs[0]) }
        if pid < 0 {
            log.warning("cannot start the health agent: fork: \(SystemError.describe(errno))")
            close(pipeFDs[0])
            if controlFDs[1] >= 0 { close(controlFDs[1]) }
            scheduleRestart()
            return
        }
        agent = Agent(pid: pid, output: pipeFDs[0], control: controlFDs[1])
        log.info("health agent started as pid \(pid)")
        if draining { tellDrain() }
    }

    /// SIGTERM with -drain-delay: not ready from now on, and the endpoint says "draining".
    func drain(for delay: GoDuration) {
        guard !draining else { return }
        draining = true
        let was = serving
        serving = false
        removeFile()
        notify("STATUS=draining")
        log.event("draining: SIGTERM goes to the child in \(delay)" + (options.healthAddr.isEmpty ? "" : "; the health endpoint answers draining")
                  + (was ? " (was SERVING)" : ""))
        tellDrain()
    }

    private func tellDrain() {
        guard let control = agent?.control, control >= 0 else { return }
        // An empty pipe takes these bytes at once; the write end does not block either way.
        let line = Array("drain\n".utf8)
        _ = line.withUnsafeBytes { write(control, $0.baseAddress, $0.count) }
    }

    private func scheduleRestart() {
        let now = MonotonicClock.now()
        deaths.removeAll { now - $0 >= ReadinessGate.deathWindow }
        deaths.append(now)
        // The deaths beyond the immediate ones walk the backoff from its start.
        var backoff = ReadinessGate.restarts
        var pause: Int64 = 0
        for _ in 0..<max(0, deaths.count - ReadinessGate.immediateRestarts) { pause = backoff.next() }
        startAt = now + pause
    }

    /// The report pipe is readable: takes what is there, a bounded amount per call.
    func readable() {
        guard let current = agent, current.output >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<4 {
            let n = buffer.withUnsafeMutableBytes { read(current.output, $0.baseAddress, $0.count) }
            if n > 0 {
                take(buffer[0..<n])
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            // End of file (the agent exited) or a failed read: nothing more comes.
            close(current.output)
            agent?.output = -1
            partial = []
            return
        }
    }

    private func take(_ bytes: ArraySlice<UInt8>) {
        for byte in bytes {
            if byte == 0x0A {
                if !discarding, let report = HealthReport(line: String(decoding: partial, as: UTF8.self)) { handle(report) }
                partial.removeAll(keepingCapacity: true)
                discarding = false
            } else if partial.count < HealthReport.maxLine {
                partial.append(byte)
            } else {
                discarding = true
            }
        }
    }

    private func handle(_ report: HealthReport) {
        guard !stopped else { return }
        switch report {
        case .event(let text):
            log.event(text)
        case .info(let text):
            log.info(text)
        case .serving(let name):
            guard !serving, !draining else { return }
            serving = true
            becameServing(name)
        case .notServing(let reason):
            if draining { return }
            let was = serving
            serving = false
            if reason != lastReason || was {
                lastReason = reason
                if was {
                    removeFile()
                    notify("STATUS=not ready: \(reason)")
                    log.event("health: \(reason) (was SERVING)")
                } else {
                    log.info("not ready yet: \(reason)")
                }
            }
        }
    }

    private var serviceSuffix: String { options.service.isEmpty ? "" : " (service \(goQuote(options.service)))" }

    private func becameServing(_ name: String) {
        // The file and the notification first: whoever reads the line may rely on them.
        createFile()
        if everReady {
            notify("STATUS=\(name) reports SERVING")
            log.event("health: SERVING (was \(lastReason))")
            return
        }
        everReady = true
        notify("READY=1\nSTATUS=\(name) reports SERVING")
        let took = GoDuration(nanoseconds: MonotonicClock.now() - started)
        log.event("ready: \(name)\(serviceSuffix) reports SERVING, \(took) after start")
    }

    private func createFile() {
        guard !options.file.isEmpty else { return }
        let fd = open(options.file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 {
            log.warning("cannot create the ready file \(options.file): \(SystemError.describe(errno))")
            return
        }
        let text = Array("SERVING\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    private func removeFile() {
        guard !options.file.isEmpty else { return }
        if unlink(options.file) != 0 && errno != ENOENT {
            log.warning("cannot remove the ready file \(options.file): \(SystemError.describe(errno))")
        }
    }

    private func notify(_ message: String) {
        guard let notifySocket else { return }
        if cshim_notify_socket(notifySocket, message) != 0 {
            log.warning("cannot notify \(notifySocket) (NOTIFY_SOCKET): \(SystemError.describe(errno))")
        }
    }

    /// Takes an exited process if it is the agent; returns whether it was.
    func reaped(_ pid: pid_t, status: Int32) -> Bool {
        guard let current = agent, current.pid == pid else { return false }
        // What it wrote before it died is still in the pipe.
        readable()
        if let fd = agent?.output, fd >= 0 { close(fd) }
        if let fd = agent?.control, fd >= 0 { close(fd) }
        agent = nil
        partial = []
        discarding = false
        guard !stopped else { return true }
        let exit = WaitStatus(status)
        scheduleRestart()
        let pause = GoDuration(nanoseconds: max(0, startAt! - MonotonicClock.now()))
        let how = exit.exitCode == 127 ? "could not run \(executable)" : exit.description
        log.warning("health agent (pid \(pid)) \(how); starting it again " + (pause.nanoseconds == 0 ? "now" : "in \(pause.rounded)"))
        return true
    }

    /// The child has exited (or the gate is no longer wanted): the agent is ended and reaped.
    func stop() {
        stopped = true
        startAt = nil
        guard let current = agent else { return }
        kill(current.pid, SIGKILL)
        var status: Int32 = 0
        _ = retryingOnInterrupt { waitpid(current.pid, &status, 0) }
        _ = reaped(current.pid, status: status)
    }
}

extension GoDuration {
    /// To the millisecond, for log lines about pauses.
    var rounded: GoDuration { GoDuration(nanoseconds: (nanoseconds + 500_000) / 1_000_000 * 1_000_000) }
}
