import CShim
import Flags
import Glibc
import SystemCalls

/// PID 1 duty: one child, every signal forwarded to it, every zombie reaped, its exit status
/// passed on. Everything happens in the turns of one reactor over a signalfd (and the agent's
/// report pipe), so an idle supervisor sleeps until a signal arrives, with no timer ticking.
final class Supervisor: EventSource {
    let options: SupervisorOptions
    private let log: SupervisorLog
    private var child: pid_t = 0
    private var childStatus: Int32? = nil
    /// When a forwarded SIGTERM/SIGINT escalates to SIGKILL (--grace).
    private var graceDeadline: Int64? = nil
    /// -drain-delay: when the SIGTERM held back goes to the child.
    private var drainDeadline: Int64? = nil
    /// The drain happened (or is under way): a later SIGTERM is forwarded at once.
    private var drained = false
    /// Processes left in the child's group after it exited: SIGTERM, then SIGKILL, each with a
    /// deadline, and their exits reaped before grpc-init exits.
    private enum Cleanup {
        case none
        case terminating(until: Int64)
        case killing(until: Int64)
    }
    private var cleanup = Cleanup.none
    /// The readiness gate and its health agent (unless -ready=false).
    private let readiness: ReadinessGate?
    /// The gate stopped the child (-ready-timeout, -exit-unhealthy-after,
    /// -exit-unresponsive-after): grpc-init's exit status.
    private var gateExit: Int32? = nil
    /// Socket activation for grpc-init (LISTEN_PID its own pid): this many descriptors from 3
    /// go to the child, with LISTEN_PID the child's.
    private var listenFDs: Int32 = 0

    /// How long processes killed with SIGKILL get to be reaped before grpc-init exits anyway.
    private static let killReapBound: Int64 = 1_000_000_000
    /// Signals read from the signalfd before the deadlines are looked at again.
    private static let signalsPerTurn = 32
    /// The loop. Start-up code (runtime initialisation, flags, spawning) is not needed while
    /// idle, so a wait with nothing pending releases those pages once nothing has happened for
    /// a second: an idle supervisor's resident set stays small, and a burst of events (an
    /// orphan storm) does not fault the code back in once per event.
    private let reactor = Reactor(releasesCodeAfter: 1_000)
    private var signals: SignalFD?
    /// grpc-init's exit status, once it is known.
    private var exitStatus: Int32?

    init(options: SupervisorOptions) {
        self.options = options
        self.log = SupervisorLog(verbose: options.verbose)
        self.readiness = options.readiness.map { [log] in ReadinessGate(options: $0, log: log) }
    }

    /// Runs the child to completion and returns grpc-init's exit status.
    func run() -> Int32 {
        if let signo = options.parentDeathSignal, cshim_set_parent_death_signal(signo) != 0 {
            log.warning("cannot set the parent death signal: \(Errno.current)")
        }
        if getpid() != 1 && cshim_set_child_subreaper() != 0 {
            log.warning("cannot become a child subreaper, orphans will not be reaped: \(Errno.current)")
        }
        // Signals 32 and 33 are the C library's own: they cannot be blocked or read from the
        // signalfd, so they are not forwarded; ignored, they cannot end grpc-init either.
        if cshim_ignore_reserved_signals() != 0 {
            log.warning("cannot ignore the C library's reserved signals: \(Errno.current)")
        }
        // Every signal that can be blocked is blocked and read from the signalfd; the child gets
        // the original mask back before exec.
        let forwardable = (1...Signals.realTimeMax).filter { $0 != SIGKILL && $0 != SIGSTOP && ($0 < 32 || $0 >= Signals.realTimeMin) }
        let signals: SignalFD
        do { signals = try SignalFD(signals: forwardable) } catch {
            log.error("cannot set up signal handling: \(error)")
            return 1
        }
        if let readiness, let failure = readiness.listenForHealth() {
            log.error("health endpoint: cannot listen on \(readiness.options.healthAddr): \(failure)")
            return 1
        }
        readiness?.listenForLocalProbes()
        takeSocketActivation()
        if let failure = spawn(childMask: signals.previousMask) { return failure }
        log.info("spawned \(options.command[0]) as pid \(child)")
        self.signals = signals
        reactor.add(self)
        if case .failed(let code) = reactor.run(until: { exitStatus != nil }) {
            log.error("poll: \(code)")
            return 1
        }
        return exitStatus!
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) {
        if let signals { set.append(pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0)) }
        if let report = readiness?.descriptor { set.append(pollfd(fd: report, events: Int16(POLLIN), revents: 0)) }
    }

    var wakeAt: Int64? {
        [graceDeadline, drainDeadline, cleanupDeadline, childStatus == nil ? readiness?.deadline : nil].compactMap { $0 }.min()
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        guard let signals else { return }
        // Signals first: forwarding never waits on the agent's reports. A bounded batch per
        // turn, then every deadline: a process queueing signals as fast as it can delays
        // neither the grace nor the child's exit (what is left is read on the next turn).
        for info in signals.next(upTo: Supervisor.signalsPerTurn) { handle(info) }
        // Once the child has exited, what the agent says about it (a lost connection) is moot.
        if polled.count > 1 && polled[polled.startIndex + 1].revents != 0 && childStatus == nil { readiness?.readable() }
        let now = MonotonicClock.now()
        if let d = drainDeadline, now >= d {
            drainDeadline = nil
            if childStatus == nil { forward(SIGTERM) }
        }
        if let d = graceDeadline, now >= d, childStatus == nil {
            graceDeadline = nil
            // The kill first: a log that cannot be written must not delay it.
            kill(-child, SIGKILL)
            log.warning("child still running \(options.grace) after the stop signal; sending SIGKILL to its process group")
        }
        if let status = childStatus {
            readiness?.stop()
            exitStatus = finish(childStatus: status, now: now)
            return
        }
        switch readiness?.tick(now: now, mask: signals.previousMask) {
        case nil:
            break
        case .notReady(let reason):
            // As a SIGTERM from outside would: the signal, then the grace and the leftovers.
            gateExit = SupervisorOptions.notReadyExit
            log.error("not ready within \(readiness!.options.startupTimeout) (-ready-timeout): \(reason); stopping the child")
            readiness?.stopping()
            forward(SIGTERM)
        case .unhealthy(let why):
            // As a SIGTERM from outside would: the drain, the grace and the leftovers.
            gateExit = SupervisorOptions.unhealthyExit
            log.error("health: \(why); stopping the child")
            received(SIGTERM)
        }
    }

    /// LISTEN_FDS and LISTEN_PID (grpc-init's own pid) from a socket-activating manager: the
    /// descriptors stay with grpc-init, close-on-exec, until the child is spawned with them (the
    /// agent never gets them). Set for another pid, they are the child's to ignore, as before.
    private func takeSocketActivation() {
        guard let pid = Environment.value("LISTEN_PID"), pid == String(getpid()),
              let text = Environment.value("LISTEN_FDS"), let count = Int32(text), count > 0, count <= 1024 else { return }
        listenFDs = count
        for fd in 3..<(3 + count) { cshim_close_on_exec(fd) }
        log.info("socket activation: descriptors 3 to \(2 + count) go to the child, with LISTEN_PID its pid")
    }

    private func spawn(childMask: sigset_t) -> Int32? {
        var mask = childMask
        // The terminal goes to the child only when it is ours to give: grpc-init's own group is
        // its foreground (`grpc-init -- cmd &` in an interactive shell leaves it to the shell).
        let foreground: Int32 = isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp() ? STDIN_FILENO : -1
        var execErrno: Int32 = 0
        // The command's bytes as given: an argument that is not UTF-8 reaches exec unchanged.
        let pid = ProcessArguments.withCArguments(options.commandBytes) { cArgs in
            cshim_spawn(cArgs[0], &cArgs, &mask, 1, foreground, listenFDs, &execErrno)
        }
        if pid < 0 {
            log.error("cannot start \(options.command[0]): fork: \(Errno.current)")
            return 1
        }
        child = pid
        guard execErrno != 0 else { return nil }
        var status: Int32 = 0
        _ = retryingOnInterrupt { waitpid(pid, &status, 0) }
        let code: Int32 = execErrno == ENOENT ? 127 : 126
        log.error("cannot run \(options.command[0]): \(Errno(execErrno))")
        return code
    }

    private func handle(_ info: signalfd_siginfo) {
        let signo = Int32(info.ssi_signo)
        if signo == SIGCHLD {
            reap()
            return
        }
        received(signo)
    }

    /// A signal for the child (or the gate's stop, as SIGTERM): the drain, or forwarded now.
    private func received(_ signo: Int32) {
        guard childStatus == nil else { return }
        if signo == SIGTERM && options.drainDelay.nanoseconds > 0 && !drained {
            // The preStop sleep a scratch image cannot run: out of rotation first, then the signal.
            drained = true
            drainDeadline = MonotonicClock.deadline(after: options.drainDelay.nanoseconds)
            if let readiness {
                readiness.drain(for: options.drainDelay)
            } else {
                log.event("draining: SIGTERM goes to the child in \(options.drainDelay)")
            }
            return
        }
        if signo == SIGTERM || signo == SIGINT { readiness?.stopping() }
        if drainDeadline != nil && (signo == SIGTERM || signo == SIGINT) {
            drainDeadline = nil
            log.info("\(Signals.name(signo)) during the drain: passing it on now")
        }
        forward(signo)
    }

    private func forward(_ signo: Int32) {
        let target = options.processGroup ? -child : child
        // The signal first, then the log line: a log that cannot be written must not delay it.
        if kill(target, signo) != 0 && errno != ESRCH {
            log.warning("cannot forward \(Signals.name(signo)): \(Errno.current)")
        } else {
            log.info("forwarding \(Signals.name(signo)) to \(options.processGroup ? "process group" : "pid") \(child)")
        }
        if (signo == SIGTERM || signo == SIGINT) && options.grace.nanoseconds > 0 && graceDeadline == nil {
            graceDeadline = MonotonicClock.deadline(after: options.grace.nanoseconds)
        }
    }

    /// Collects every exited process: the child's status is kept, others are just reaped.
    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            if readiness?.reaped(pid, status: status) == true { continue }
            if pid == child && childStatus == nil {
                childStatus = status
                log.info("child pid \(pid) \(describe(status))")
            } else if options.warnReaped {
                log.warning("reaped zombie pid \(pid) (\(describe(status)))")
            } else {
                log.info("reaped pid \(pid) (\(describe(status)))")
            }
        }
    }

    private var cleanupDeadline: Int64? {
        switch cleanup {
        case .none: return nil
        case .terminating(let until), .killing(let until): return until
        }
    }

    /// After the child exits: SIGTERM what is left of its group, SIGKILL after the leftover
    /// grace, reap them, then exit with the child's status. Returns nil while waiting.
    private func finish(childStatus status: Int32, now: Int64) -> Int32? {
        // Ours are reaped as SIGCHLD arrives; a zombie another parent holds is not waited for.
        let leftovers: Leftovers = getpid() == 1 ? .everyone : .group(child)
        if leftovers.remain {
            switch cleanup {
            case .none:
                leftovers.signal(SIGTERM)
                cleanup = .terminating(until: MonotonicClock.deadline(after: options.leftoverGrace.nanoseconds))
                log.info("sending SIGTERM to \(leftovers)")
                return nil
            case .terminating(let until):
                if now < until { return nil }
                leftovers.signal(SIGKILL)
                cleanup = .killing(until: MonotonicClock.deadline(after: Supervisor.killReapBound))
                log.warning("\(leftovers) outlived \(options.leftoverGrace) after SIGTERM; sending SIGKILL")
                return nil
            case .killing(let until):
                if now < until { return nil }
                log.warning("\(leftovers) still present after SIGKILL; exiting without them")
            }
        }
        if let gateExit { return gateExit }
        var code = WaitStatus(status).shellCode
        if options.remapExit.contains(code) {
            log.info("exit status \(code) remapped to 0")
            code = 0
        }
        return code
    }

    private func describe(_ status: Int32) -> String { WaitStatus(status).description }
}

/// A status as waitpid(2) reports it.
struct WaitStatus: CustomStringConvertible {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }

    /// The exit code, or nil when a signal killed the process.
    var exitCode: Int32? { raw & 0x7F == 0 ? (raw >> 8) & 0xFF : nil }
    /// As a shell reports it: the exit code, or 128+N when killed by signal N.
    var shellCode: Int32 { exitCode ?? 128 + (raw & 0x7F) }
    var description: String { exitCode.map { "exited with status \($0)" } ?? "killed by \(Signals.name(raw & 0x7F))" }
}

/// `[grpc-init]` lines on stderr: errors, warnings and events always, the rest with --verbose.
/// Never blocks: a line that cannot be written at once is dropped and counted (LogStream). One
/// line per event: control characters in what a line carries (a peer's status message, a
/// command's name) are escaped.
struct SupervisorLog {
    let verbose: Bool
    private let stream = LogStream(fd: STDERR_FILENO)

    init(verbose: Bool) { self.verbose = verbose }

    func info(_ text: String) { if verbose { stream.line("[grpc-init] " + escapingControlCharacters(text)) } }
    func event(_ text: String) { stream.line("[grpc-init] " + escapingControlCharacters(text)) }
    func warning(_ text: String) { stream.line("[grpc-init] warning: " + escapingControlCharacters(text)) }
    func error(_ text: String) { stream.line("[grpc-init] error: " + escapingControlCharacters(text)) }
}
