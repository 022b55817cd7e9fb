import CShim
import Flags
import GateProtocol
import Glibc
import SystemCalls

/// PID 1 duty: one child, every signal forwarded to it, every zombie reaped, its exit status
/// passed on. Everything happens in the turns of one reactor over a signalfd (and the agent's
/// report pipe), so an idle supervisor sleeps until a signal arrives, with no timer ticking.
/// What to do about each event is the StopSequence's decision; this loop gathers the events,
/// performs the actions and says them.
final class Supervisor: EventSource {
    let options: SupervisorOptions
    /// Socket activation for grpc-init, taken before grpc-init opened anything of its own.
    private let activation: SocketActivation
    private let log: SupervisorLog
    private var child: pid_t = 0
    private var decisions: StopSequence
    /// The readiness gate and its health agent (unless -ready=false).
    private let readiness: ReadinessGate?

    /// Signals read from the signalfd before the deadlines are looked at again.
    private static let signalsPerTurn = 32
    /// The loop. Start-up code (runtime initialisation, flags, spawning) is not needed while
    /// idle, so a wait with nothing pending releases those pages once nothing has happened for
    /// a second: an idle supervisor's resident set stays small, and a burst of events (an
    /// orphan storm) does not fault the code back in once per event.
    private let reactor = Reactor(releasesCodeAfter: 1_000)
    private var signals: SignalFD?

    init(options: SupervisorOptions) {
        activation = SocketActivation.take()
        self.options = options
        self.log = SupervisorLog(verbose: options.verbose, format: options.logFormat)
        let readiness = options.readiness.map { [log] in ReadinessGate(options: $0, log: log) }
        self.readiness = readiness
        var configuration = StopSequence.Configuration()
        configuration.drain = options.drain
        configuration.rewrites = options.rewriteSignals
        configuration.grace = options.grace.nanoseconds
        configuration.leftoverGrace = options.leftoverGrace.nanoseconds
        configuration.remapExit = options.remapExit
        if let gate = options.readiness {
            configuration.readyTimeout = gate.startupTimeout.nanoseconds
            configuration.unhealthyAfter = gate.exitUnhealthyAfter?.nanoseconds
            configuration.unresponsiveAfter = gate.exitUnresponsiveAfter?.nanoseconds
            configuration.watchdogEvery = readiness?.outputs.watchdogUsec.map { max(1, $0.multipliedSaturated(by: 1_000) / 2) }
        }
        decisions = StopSequence(configuration, now: MonotonicClock.now())
        readiness?.answerInterval = configuration.answerInterval
    }

    /// Runs the child to completion and returns grpc-init's exit status.
    func run() -> Int32 {
        let status = supervise()
        log.finish()
        return status
    }

    private func supervise() -> Int32 {
        if let refusal = activation.refusal { log.warning(refusal) }
        if let signo = options.parentDeathSignal, cshim_set_parent_death_signal(signo) != 0 {
            let code = Errno.current
            log.warning("cannot set the parent death signal: \(code)", LogField.signal(signo) + [.error(code)])
        }
        if getpid() != 1 && cshim_set_child_subreaper() != 0 {
            let code = Errno.current
            log.warning("cannot become a child subreaper, orphans will not be reaped: \(code)", [.error(code)])
        }
        // Signals 32 and 33 are the C library's own: they cannot be blocked or read from the
        // signalfd, so they are not forwarded; ignored, they cannot end grpc-init either.
        if cshim_ignore_reserved_signals() != 0 {
            let code = Errno.current
            log.warning("cannot ignore the C library's reserved signals: \(code)", [.error(code)])
        }
        // Every signal that can be blocked is blocked and read from the signalfd; the child gets
        // the original mask back before exec.
        let forwardable = (1...Signals.realTimeMax).filter { $0 != SIGKILL && $0 != SIGSTOP && ($0 < 32 || $0 >= Signals.realTimeMin) }
        let signals: SignalFD
        do { signals = try SignalFD(signals: forwardable) } catch {
            log.error("cannot set up signal handling: \(error)", [.error(error)])
            return 1
        }
        if let readiness, let failure = readiness.listenForHealth() {
            log.error("health endpoint: cannot listen on \(readiness.options.healthAddr): \(failure)",
                      [.string("address", readiness.options.healthAddr), .string("error", failure)])
            return 1
        }
        readiness?.listenForLocalProbes()
        if activation.count > 0 {
            log.info("socket activation: descriptors 3 to \(2 + activation.count) go to the child, with LISTEN_PID its pid",
                     [.integer("descriptors", activation.count)])
        }
        if let failure = spawn(childMask: signals.previousMask) { return failure }
        log.info("spawned \(options.command[0]) as pid \(child)", [.command(options.command[0]), .pid(child)])
        readiness?.childStarted(pid: child)
        self.signals = signals
        reactor.add(self)
        if case .failed(let code) = reactor.run(until: { decisions.exitStatus != nil }) {
            log.error("poll: \(code)", [.string("call", "poll"), .error(code)])
            return 1
        }
        return decisions.exitStatus ?? 1
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) {
        if let signals { set.append(pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0)) }
        if let report = readiness?.descriptor { set.append(pollfd(fd: report, events: Int16(POLLIN), revents: 0)) }
        if let notify = readiness?.outputs.notifier?.waitingDescriptor { set.append(pollfd(fd: notify, events: Int16(POLLOUT), revents: 0)) }
        if let log = log.waitingDescriptor { set.append(pollfd(fd: log, events: Int16(POLLOUT), revents: 0)) }
    }

    var wakeAt: Int64? {
        [decisions.wakeAt, decisions.childExited ? nil : readiness?.deadline].compactMap { $0 }.min()
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        guard let signals else { return }
        // Signals first: forwarding never waits on the agent's reports. A bounded batch per
        // turn, then every deadline: a process queueing signals as fast as it can delays
        // neither the grace nor the child's exit (what is left is read on the next turn).
        for info in signals.next(upTo: Supervisor.signalsPerTurn) {
            let signo = Int32(info.ssi_signo)
            if signo == SIGCHLD { reap() } else { decide(.signal(signo)) }
        }
        for entry in polled.dropFirst() where entry.revents != 0 {
            if entry.fd == readiness?.descriptor {
                // Once the child has exited, what the agent says about it (a lost connection) is moot.
                if !decisions.childExited { readiness?.readable() }
            } else if entry.fd == readiness?.outputs.notifier?.waitingDescriptor {
                readiness?.outputs.notifier?.writable()
            } else if entry.fd == log.waitingDescriptor {
                log.writable()
            }
        }
        if let readiness, !decisions.childExited {
            for event in readiness.takeEvents() { decide(event) }
            readiness.tick(now: MonotonicClock.now(), mask: signals.previousMask)
        }
        decide(.tick)
        if decisions.childExited && decisions.exitStatus == nil { lookForLeftovers() }
    }

    /// One event through the stop sequence, and its actions performed.
    private func decide(_ event: StopSequence.Event) {
        for action in decisions.handle(event, now: MonotonicClock.now()) { perform(action) }
    }

    private var leftovers: Leftovers { getpid() == 1 ? .everyone : .group(child) }

    private func lookForLeftovers() { decide(.leftovers(remain: leftovers.remain(ignoring: readiness?.killedAgent))) }

    private func perform(_ action: StopSequence.Action) {
        switch action {
        case .forward(let signo):
            forward(signo)
        case .rewritten(let from, let to):
            log.info("\(Signals.name(from)) rewritten to \(Signals.name(to)) (-rewrite-signal)")
        case .dropped(let signo):
            log.info("\(Signals.name(signo)) not passed on (-rewrite-signal to 0)")
        case .killChild:
            // The kill first: a log that cannot be written must not delay it.
            if kill(-child, SIGKILL) != 0 && errno != ESRCH {
                let code = Errno.current
                log.warning("cannot SIGKILL process group \(child): \(code)", [.integer("process_group", child)] + LogField.signal(SIGKILL) + [.error(code)])
            }
            log.warning("child still running \(options.grace) after the stop signal; sending SIGKILL to its process group",
                        [.integer("process_group", child), .seconds("grace_seconds", options.grace)] + LogField.signal(SIGKILL))
        case .stopping:
            readiness?.stopping()
        case .stopBegun(let cause):
            if let readiness { log.error(readiness.words(for: cause), readiness.fields(for: cause)) }
        case .drain:
            let signo = decisions.configuration.ownStopSignal
            if let readiness {
                readiness.drain(options.drain, signal: signo)
            } else {
                log.event("\(Drain.word): \(Signals.name(signo)) goes to the child in \(options.drain.delay)",
                          LogField.signal(signo) + [.seconds("delay_seconds", options.drain.delay)])
            }
        case .drainCut(let signo):
            log.info("\(Signals.name(signo)) during the drain: passing it on now", LogField.signal(signo))
        case .pingWatchdog:
            readiness?.outputs.notify(.watchdog)
        case .childGone:
            readiness?.stop()
        case .lookForLeftovers:
            lookForLeftovers()
        case .signalLeftovers(let signo):
            let who = leftovers
            if let failure = who.signal(signo) {
                log.warning("cannot send \(Signals.name(signo)) to \(who): \(failure)", LogField.signal(signo) + [.string("to", who.description), .error(failure)])
            }
            if signo == SIGKILL {
                log.warning("\(who) outlived \(options.leftoverGrace) after SIGTERM; sending SIGKILL",
                            LogField.signal(signo) + [.string("to", who.description), .seconds("grace_seconds", options.leftoverGrace)])
            } else {
                log.info("sending \(Signals.name(signo)) to \(who)", LogField.signal(signo) + [.string("to", who.description)])
            }
        case .leftoversAbandoned:
            log.warning("\(leftovers) still present after SIGKILL; exiting without them", [.string("to", leftovers.description)])
        case .remapped(let code):
            log.info("exit status \(code) remapped to 0", [.integer("exit_code", code)])
        case .exit:
            break
        }
    }

    private func spawn(childMask: sigset_t) -> Int32? {
        var mask = childMask
        // The terminal goes to the child only when it is ours to give: grpc-init's own group is
        // its foreground (`grpc-init -- cmd &` in an interactive shell leaves it to the shell).
        let foreground: Int32 = isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp() ? STDIN_FILENO : -1
        var report = cshim_spawn_report()
        // The command's bytes as given: an argument that is not UTF-8 reaches exec unchanged.
        let pid = ProcessArguments.withCArguments(options.commandBytes) { cArgs in
            cshim_spawn(cArgs[0], &cArgs, &mask, 1, foreground, activation.count, &report)
        }
        if pid < 0 {
            let code = Errno.current
            log.error("cannot start \(options.command[0]): fork: \(code)", [.command(options.command[0]), .string("call", "fork"), .error(code)])
            return 1
        }
        child = pid
        let failures = ChildFailure.all(in: report)
        for failure in failures where !failure.fatal {
            log.warning("\(options.command[0]) (pid \(pid)): \(failure.call) before exec: \(failure.code); it runs all the same",
                        [.command(options.command[0]), .pid(pid), .string("call", failure.call), .error(failure.code)])
        }
        guard let fatal = failures.first(where: { $0.fatal }) else { return nil }
        // The failed child has exited (it wrote why and called _exit).
        var status: Int32 = 0
        if retryingOnInterrupt({ waitpid(pid, &status, 0) }) < 0 {
            let code = Errno.current
            log.warning("cannot reap pid \(pid): \(code)", [.pid(pid), .error(code)])
        }
        if fatal.isExec {
            let exit: Int32 = fatal.code.rawValue == ENOENT ? 127 : 126
            log.error("cannot run \(options.command[0]): \(fatal.code)",
                      [.command(options.command[0]), .string("call", fatal.call), .error(fatal.code), .integer("exit_code", exit)])
            return exit
        }
        log.error("cannot run \(options.command[0]): \(fatal.call): \(fatal.code)",
                  [.command(options.command[0]), .string("call", fatal.call), .error(fatal.code), .integer("exit_code", 126)])
        return 126
    }

    private func forward(_ signo: Int32) {
        let target = options.processGroup ? -child : child
        // The signal first, then the log line: a log that cannot be written must not delay it.
        if kill(target, signo) != 0 && errno != ESRCH {
            let code = Errno.current
            log.warning("cannot forward \(Signals.name(signo)): \(code)", LogField.signal(signo) + [.pid(child), .error(code)])
        } else {
            log.info("forwarding \(Signals.name(signo)) to \(options.processGroup ? "process group" : "pid") \(child)",
                     LogField.signal(signo) + [options.processGroup ? .integer("process_group", child) : .pid(child)])
        }
    }

    /// Collects every exited process: the child's status goes to the stop sequence, others are
    /// just reaped.
    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid < 0 && errno != ECHILD {
                let code = Errno.current
                log.warning("waitpid: \(code)", [.string("call", "waitpid"), .error(code)])
            }
            if pid <= 0 { return }
            if readiness?.reaped(pid, status: status) == true { continue }
            if pid == child && !decisions.childExited {
                log.info("child pid \(pid) \(describe(status))", [.pid(pid)] + LogField.ended(WaitStatus(status)))
                decide(.childExited(status: status))
            } else if options.warnReaped {
                log.warning("reaped zombie pid \(pid) (\(describe(status)))", [.pid(pid)] + LogField.ended(WaitStatus(status)))
            } else {
                log.info("reaped pid \(pid) (\(describe(status)))", [.pid(pid)] + LogField.ended(WaitStatus(status)))
            }
        }
    }

    private func describe(_ status: Int32) -> String { WaitStatus(status).description }
}

/// LISTEN_FDS and LISTEN_PID (grpc-init's own pid) from a socket-activating manager: the
/// descriptors stay with grpc-init, close-on-exec, until the child is spawned with them (the
/// agent never gets them), LISTEN_PID then the child's. Taken before grpc-init opens anything of
/// its own, so that nothing of grpc-init's can fall among them, and only when every descriptor
/// named is open: an overstated count would hand the child whatever grpc-init opens there.
/// Set for another pid, they are not grpc-init's: nothing is passed.
struct SocketActivation {
    /// Descriptors from 3 that go to the child.
    let count: Int32
    /// Why LISTEN_FDS was refused, to be logged.
    let refusal: String?

    static let maxDescriptors: Int32 = 1024

    static func take() -> SocketActivation {
        guard let pid = Environment.value("LISTEN_PID"), pid == String(getpid()), let text = Environment.value("LISTEN_FDS") else {
            return SocketActivation(count: 0, refusal: nil)
        }
        let why: String
        if let count = Int32(text), count > 0, count <= maxDescriptors {
            if let closed = (3..<(3 + count)).first(where: { cshim_descriptor_is_open($0) == 0 }) {
                why = "descriptor \(closed) is not open"
            } else if let fd = (3..<(3 + count)).first(where: { cshim_close_on_exec($0) != 0 }) {
                // Checked open just now: only EBADF could refuse it, and nothing closed them since.
                why = "descriptor \(fd): fcntl: \(Errno.current)"
            } else {
                return SocketActivation(count: count, refusal: nil)
            }
        } else {
            why = "want 1 to \(maxDescriptors) descriptors"
        }
        // Refused: the child is not told of descriptors it does not get. unsetenv(3) fails only
        // for a name that is empty or holds '=': these are neither.
        for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] { _ = unsetenv(name) }
        return SocketActivation(count: 0, refusal: "LISTEN_FDS=\(goQuote(text)) refused (\(why)): no descriptors passed to the child")
    }
}

/// A call a spawned child made before exec that failed (cshim_spawn's report).
struct ChildFailure {
    let call: String
    let code: Errno
    /// The child exited without running the command.
    let fatal: Bool
    /// exec itself failed: the command could not be found or run.
    let isExec: Bool

    static func all(in report: cshim_spawn_report) -> [ChildFailure] {
        var report = report
        return (0..<max(0, min(report.count, CSHIM_SPAWN_FAILURES))).map { index in
            let failure = cshim_spawn_failure(&report, index)
            return ChildFailure(call: String(cString: cshim_call_name(failure.call)), code: Errno(failure.error),
                                fatal: failure.fatal != 0, isExec: Int(failure.call) == CSHIM_CALL_EXEC)
        }
    }
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
