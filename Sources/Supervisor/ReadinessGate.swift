import Addressing
import CShim
import Flags
import GateProtocol
import Glibc
import SystemCalls

/// The supervisor's side of the readiness gate. The health agent, our own binary run as a
/// process of its own, does the network work and reports each change over a pipe, as typed
/// messages of the gate protocol; this side owns the words and tells the world: the log lines,
/// the -ready-file, READY=1 and STATUS= on NOTIFY_SOCKET. What the reports mean for the child
/// (the ready timeout, the health actions) is the StopSequence's to decide: the gate hands it
/// the facts (`events`). It never waits on the agent: its reports are read as they come, and if
/// it dies it is started again after a pause that doubles with each death.
final class ReadinessGate {
    let options: GateConfiguration
    private let log: SupervisorLog
    /// The ready file and NOTIFY_SOCKET.
    let outputs: ReadinessOutputs
    private let started = MonotonicClock.now()
    private let executable: String

    private struct Agent: ~Copyable {
        let pid: pid_t
        /// The read end of its report pipe; nil (closed) once it reached end of file.
        var output: FileDescriptor?
        /// The write end of its control pipe (its stdin): its configuration, then commands; nil
        /// (closed) once the agent is gone.
        var control: FileDescriptor?
        /// A call before exec that failed and made it exit, as it reported it.
        var failure: ChildFailure?
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
    private var healthListener: FileDescriptor? = nil
    /// The local probe socket (an abstract name for this PID namespace), descriptor 4 for each
    /// agent; nil when it cannot be had.
    private var localListener: FileDescriptor? = nil
    /// How often the agent proves the server answers (StopSequence.Configuration.answerInterval).
    var answerInterval: Int64 = 0
    /// What the agent reported that the stop sequence decides on, for the supervisor to take.
    private(set) var events: [StopSequence.Event] = []
    /// Lines a peer's behaviour can cause, held to a rate.
    private var budget = LineBudget()
    /// The agent's frames as they arrive.
    private var decoder = GateFraming.Decoder()
    private var serving = false
    /// The stop began without a drain (SIGINT, SIGTERM with no -drain-delay, the ready
    /// timeout): a SERVING said now makes nothing ready.
    private var stopBegun = false
    private var everReady = false
    private var lastReason = Reason.starting
    /// The server found has no health service: ready because it answers gRPC.
    private var withoutHealth = false
    private var stopped = false
    /// What the agent's metrics need from here: told after the configuration and on each change.
    private var facts = SupervisorFacts()
    /// Why the gate is killing the agent, for its restart's cause.
    private var killCause: AgentRestartCause?

    /// A dead agent is started again at once this many times within `deathWindow`; past that,
    /// after `restarts` (100 ms doubling to 30 s): a crash costs milliseconds, a crash loop
    /// does not spin.
    static let immediateRestarts = 3
    static let deathWindow: Int64 = 60_000_000_000
    static let restarts = Backoff(first: 100_000_000, maximum: 30_000_000_000)

    init(options: GateConfiguration, log: SupervisorLog) {
        self.options = options
        self.log = log
        outputs = ReadinessOutputs(file: options.file, log: log)
        executable = ReadinessGate.ownExecutable()
        startAt = MonotonicClock.now()
        facts.supervisorStarted = WallClock.now()
    }

    /// The child was spawned: its pid and start go to the agent's metrics.
    func childStarted(pid: pid_t) {
        facts.childPid = pid
        facts.childStarted = WallClock.now()
        tellFacts()
    }

    /// The facts, to an agent that serves -health-addr (the only one with metrics to show).
    private func tellFacts() {
        if !options.healthAddr.isEmpty { tell(.facts(facts)) }
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
        guard fd >= 0 else { return "\(step.map { String(cString: $0) } ?? "listen"): \(Errno.current)" }
        healthListener = FileDescriptor(owning: fd)
        return nil
    }

    /// Binds the local probe socket, for `grpc_health_probe` with no -addr: an abstract name
    /// made from this PID namespace, which a probe in the same container computes the same way.
    /// Another grpc-init in the same namespaces (not PID 1) may hold it: then probes reach that one.
    func listenForLocalProbes() {
        guard let namespace = Files.linkTarget("/proc/self/ns/pid"), let name = LocalProbeSocket.name(namespace: namespace) else {
            log.info("local probe socket: cannot read /proc/self/ns/pid; grpc_health_probe needs -addr")
            return
        }
        let fd = cshim_listen_abstract(name, ReadinessGate.localProbeBacklog)
        if fd < 0 {
            let code = Errno.current
            let holder = code.rawValue == EADDRINUSE ? " (another process holds the name: a second grpc-init here, or a process of another container of the pod)" : ""
            log.warning("local probe socket @\(name): \(code)\(holder); grpc_health_probe with no flags is unavailable (give it -addr)",
                        [.string("socket", "@" + name), .error(code)])
            return
        }
        localListener = FileDescriptor(owning: fd)
    }

    /// Room for a burst of probes in the local socket's backlog; foreign connections are
    /// accepted and dropped by the agent as fast as they come.
    static let localProbeBacklog: Int32 = 128

    /// The agent the gate has stopped (SIGKILLed) and not reaped yet.
    var killedAgent: pid_t? { stopped ? agent?.pid : nil }

    /// The report pipe, for the supervisor's poll.
    var descriptor: Int32? { agent?.output?.rawValue }

    /// When the gate wants to run next: to start the agent, or to say how many lines it held back.
    var deadline: Int64? {
        [startAt, budget.flushAt].compactMap { $0 }.min()
    }

    /// Why the stop sequence stopped the child, in words: the current reason included.
    func words(for cause: StopSequence.Cause) -> String {
        switch cause {
        case .signal(let signo): return "\(Signals.name(signo))"
        case .notReady:
            return "not ready within \(options.startupTimeout) (-\(GateConfiguration.name(of: \.startupTimeout))): \(lastReason); stopping the child"
        case .unhealthy(answering: true):
            return "health: not SERVING for \(options.exitUnhealthyAfter ?? .second) (-\(GateConfiguration.name(of: \.exitUnhealthyAfter))): \(lastReason); stopping the child"
        case .unhealthy(answering: false):
            return "health: no answer from the health service for \(options.exitUnhealthyAfter ?? .second) (-\(GateConfiguration.name(of: \.exitUnhealthyAfter))); stopping the child"
        case .unresponsive:
            return "health: no answer from the health service for \(options.exitUnresponsiveAfter ?? .second) (-\(GateConfiguration.name(of: \.exitUnresponsiveAfter))); stopping the child"
        }
    }

    /// Why the stop sequence stopped the child, as fields: the cause, and the reason it had.
    func fields(for cause: StopSequence.Cause) -> [LogField] {
        switch cause {
        case .signal(let signo): return [.string("cause", "signal")] + LogField.signal(signo)
        case .notReady:
            return [.string("cause", GateConfiguration.name(of: \.startupTimeout)), .seconds("after_seconds", options.startupTimeout)] + LogField.reason(lastReason)
        case .unhealthy(answering: true):
            return [.string("cause", GateConfiguration.name(of: \.exitUnhealthyAfter)), .seconds("after_seconds", options.exitUnhealthyAfter ?? .second)] + LogField.reason(lastReason)
        case .unhealthy(answering: false):
            return [.string("cause", GateConfiguration.name(of: \.exitUnhealthyAfter)), .seconds("after_seconds", options.exitUnhealthyAfter ?? .second), LogField("answering", .bool(false))]
        case .unresponsive:
            return [.string("cause", GateConfiguration.name(of: \.exitUnresponsiveAfter)), .seconds("after_seconds", options.exitUnresponsiveAfter ?? .second)]
        }
    }

    /// Starts the agent when it is due, and says what the line budget held back once its
    /// window is over.
    func tick(now: Int64, mask: sigset_t) {
        if let due = startAt, now >= due, !stopped { spawn(mask: mask) }
        if let held = budget.flush(now: now) { log.warning(held.text, held.fields) }
    }

    /// Hands over what the stop sequence is to decide on.
    func takeEvents() -> [StopSequence.Event] {
        defer { events.removeAll() }
        return events
    }

    private func spawn(mask: sigset_t) {
        startAt = nil
        // Each end is closed exactly once whatever happens below: ours when the agent's record
        // lets go of it, the agent's once it has them (or the spawn failed).
        let reports: PipeEnds
        do throws(SystemError) { reports = try FileDescriptor.pipe(nonblockingEnd: 0) } catch {
            log.warning("cannot start the health agent: \(error)", [.error(error)])
            facts.restarted(.startFailed)
            scheduleRestart()
            return
        }
        let control: PipeEnds
        do throws(SystemError) { control = try FileDescriptor.pipe(nonblockingEnd: 1) } catch {
            log.warning("cannot start the health agent: \(error)", [.error(error)])
            facts.restarted(.startFailed)
            scheduleRestart()
            return
        }
        // The health port goes down as descriptor 3: the agent serves on it, never binds.
        let arguments = ["grpc-init-agent"]
        var configuration = options
        configuration.servesLocalProbes = localListener != nil
        configuration.answerInterval = GoDuration(nanoseconds: answerInterval)
        var cArgs: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var childMask = mask
        var report = cshim_spawn_report()
        let pid = cshim_spawn_helper(executable, &cArgs, &childMask, reports.write.rawValue, control.read.rawValue,
                                     healthListener?.rawValue ?? -1, localListener?.rawValue ?? -1, &report)
        let forkFailure = Errno.current
        // The agent's ends are its own now (or nobody's): ours go.
        closeOrSay(reports.write, "the health agent's report pipe")
        closeOrSay(control.read, "the health agent's control pipe")
        if pid < 0 {
            log.warning("cannot start the health agent: fork: \(forkFailure)", [.string("call", "fork"), .error(forkFailure)])
            facts.restarted(.startFailed)
            scheduleRestart()
            return
        }
        let failures = ChildFailure.all(in: report)
        for failure in failures where !failure.fatal {
            log.warning("health agent (pid \(pid)): \(failure.call) before exec: \(failure.code); it runs all the same",
                        [.pid(pid), .string("call", failure.call), .error(failure.code)])
        }
        agent = Agent(pid: pid, output: reports.read, control: control.write, failure: failures.first { $0.fatal })
        events.append(.agent(running: true))
        log.info("health agent started as pid \(pid)", [.pid(pid)])
        tell(.configure(configuration))
        tellFacts()
        if draining { tell(.drain) }
    }

    /// Closes a descriptor whose close the gate has nothing to do about but say.
    private func closeOrSay(_ fd: consuming FileDescriptor, _ what: String) {
        do throws(SystemError) { try fd.close() } catch { log.warning("\(what): \(error)", [.error(error)]) }
    }

    /// The stop began: nothing becomes ready from now on.
    func stopping() {
        stopBegun = true
        outputs.notify(.stopping)
    }

    /// The stop signal with -drain-delay: not ready from now on, and the endpoint says
    /// "draining"; `signal` reaches the child after the drain's delay.
    func drain(_ drain: Drain, signal: Int32) {
        guard !draining else { return }
        draining = true
        let was = serving
        serving = false
        outputs.removeFile()
        outputs.notify(.status(Drain.word))
        // The agent first, so that whoever reads the line finds the endpoint draining.
        tell(.drain)
        log.event("\(Drain.word): \(Signals.name(signal)) goes to the child in \(drain.delay)" + (options.servesHealth ? "; the health endpoint answers \(Drain.word)" : "")
                  + (was ? " (was SERVING)" : ""), LogField.signal(signal) + [.seconds("delay_seconds", drain.delay), LogField("was_serving", .bool(was))])
    }

    private func tell(_ message: SupervisorMessage) {
        // A pipe's buffer takes a frame at once (the configuration first, into an empty pipe);
        // the write end does not block either way.
        let frame = message.frame
        let what: String
        switch message {
        case .drain: what = "to drain"
        case .configure: what = "its configuration"
        case .facts: what = "the supervisor's facts"
        }
        let written: Int?
        do throws(SystemError) {
            written = try agent?.control?.write(frame)
        } catch where error.code.rawValue == EPIPE {
            // The agent has died and is not reaped yet (the write's SIGPIPE is taken back, not
            // forwarded): its death is said when it is reaped, and the agent started then is
            // told everything again.
            agent?.control = nil
            return
        } catch {
            written = nil
            log.warning("health agent: cannot tell it \(what): \(error); restarting it", [.error(error)])
            killAgent(because: .unwritable)
            return
        }
        guard let written, written != frame.count else { return }
        // Only a full pipe can take part of a frame, and the agent reads its control pipe in
        // every turn: an agent that does not is stuck, and one started anew is told everything again.
        log.warning("health agent: cannot tell it \(what): short write (\(written) of \(frame.count) bytes); restarting it",
                    [.integer("written", written), .integer("bytes", frame.count)])
        killAgent(because: .unwritable)
    }

    /// SIGKILL for the agent, whose death is then reaped and said as any other.
    private func killAgent(because cause: AgentRestartCause? = nil) {
        if let cause, killCause == nil { killCause = cause }
        // ESRCH: it is dead already (a zombie is still there to kill): nothing left to do.
        if let pid = agent?.pid, kill(pid, SIGKILL) != 0 && errno != ESRCH {
            let code = Errno.current
            log.warning("cannot kill the health agent (pid \(pid)): kill: \(code)", [.pid(pid), .string("call", "kill"), .error(code)])
        }
    }

    private func scheduleRestart() {
        let now = MonotonicClock.now()
        deaths.removeAll { now - $0 >= ReadinessGate.deathWindow }
        deaths.append(now)
        // The deaths beyond the immediate ones walk the backoff from its start.
        var backoff = ReadinessGate.restarts
        var pause: Int64 = 0
        for _ in 0..<max(0, deaths.count - ReadinessGate.immediateRestarts) { pause = backoff.next() }
        startAt = now.addingSaturated(pause)
    }

    /// The report pipe is readable: takes what is there, a bounded amount per call.
    func readable() {
        guard let fd = agent?.output?.rawValue else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<4 {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                take(buffer[0..<n])
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            // End of file (the agent exited) or a failed read: nothing more comes. A failure is
            // the pipe's (EIO cannot happen on one): the agent's death says the rest.
            agent?.output = nil
            decoder = GateFraming.Decoder()
            return
        }
    }

    private func take(_ bytes: ArraySlice<UInt8>) {
        decoder.append(bytes)
        do {
            while let frame = try decoder.nextFrame() {
                if let message = try AgentMessage.decode(kind: frame.kind, payload: frame.payload) { handle(message) }
            }
        } catch {
            // Nothing after a broken frame can be trusted: the agent is ended and started again.
            log.warning("health agent: \(error); restarting it", [.error(error)])
            decoder = GateFraming.Decoder()
            killAgent(because: .protocolError)
        }
    }

    private func owner(_ pid: Int32?) -> String { pid.map { " (pid \($0))" } ?? "" }

    /// Every word users read about the gate is written here. What a peer's behaviour causes
    /// (the server flapping, discovery's findings) goes through the line budget.
    private func handle(_ message: AgentMessage) {
        guard !stopped else { return }
        let now = MonotonicClock.now()
        switch message {
        case .found(let server, let pid, let reach):
            say(.event, now, [.string("server", server)] + (pid.map { [.pid($0)] } ?? []) + [.string("reach", reach.description)]) {
                "health: found the gRPC server at \(server)\(self.owner(pid)), \(reach)"
            }
        case .passedOver(let listener, let pid, let why):
            say(.info, now, [.string("listener", listener)] + (pid.map { [.pid($0)] } ?? []) + [.string("detail", why.description)]) {
                "health: \(listener)\(self.owner(pid)) is not a gRPC server we can check: \(why)"
            }
        case .goAway(let server):
            say(.info, now, [.string("server", server)]) { "health: \(server) sent GOAWAY; watching on a new connection" }
        case .noWatch(let server, let interval):
            say(.info, now, [.string("server", server), .seconds("interval_seconds", nanoseconds: interval)]) {
                "health: \(server) has no Health/Watch; a Check every \(GoDuration(nanoseconds: interval))"
            }
        case .svid(let id, let rotated):
            say(.info, now, [.string("spiffe_id", id), LogField("rotated", .bool(rotated))]) {
                "health: \(rotated ? "rotated to" : "using") an X.509-SVID for \(id)"
            }
        case .tlsOnHealthPort:
            say(.info, now) { "health endpoint: a TLS handshake on the health port, which is plaintext (HTTP/1.1 and h2c); connection closed" }
        case .invalidConfiguration(let why):
            say(.warning, now, [.string("detail", why)]) { "health agent: \(why)" }
        case .noHealthService(let server):
            withoutHealth = true
            say(.event, now, [.string("server", server), .string("status", "SERVING")]) {
                "health: \(server) has no health service (grpc.health.v1.Health is UNIMPLEMENTED): ready because it answers gRPC; no periodic Checks"
            }
        case .answered:
            events.append(.answered)
        case .gone(let server):
            say(.event, now, [.string("server", server)]) { "health: \(server) is gone; it no longer counts" }
        case .service(let name, let state):
            if draining { return }
            switch state {
            case .serving: say(.info, now, [.string("service", name), .string("status", "SERVING")]) { "health: service \(goQuote(name)) SERVING" }
            case .notServing(let why): say(.info, now, LogField.reason(.service(name, why))) { "health: service \(goQuote(name)): \(why)" }
            }
        case .health(.serving(let server)):
            guard !draining && !stopBegun else { return }
            events.append(.health(serving: true))
            guard !serving else { return }
            serving = true
            becameServing(server, now: now)
        case .health(.notServing(let reason)):
            if draining { return }
            withoutHealth = false
            events.append(.health(serving: false))
            let was = serving
            serving = false
            if reason != lastReason || was {
                lastReason = reason
                if was {
                    outputs.removeFile()
                    outputs.notify(.status("not ready: \(reason)"))
                    say(.event, now, LogField.reason(reason) + [LogField("was_serving", .bool(true))]) { "health: \(reason) (was SERVING)" }
                } else {
                    say(.info, now, LogField.reason(reason)) { "not ready yet: \(reason)" }
                }
            }
        }
    }

    private func say(_ level: SupervisorLog.Level, _ now: Int64, _ fields: @autoclosure () -> [LogField] = [], _ text: () -> String) {
        guard log.writes(level) else { return }
        switch budget.take(now: now) {
        case .refused: return
        case .allowed(let held):
            if let held { log.warning(held.text, held.fields) }
            log.line(level, text(), fields())
        }
    }

    /// The configured services: `service`, or `services` when there are several.
    private var serviceFields: [LogField] {
        if options.services == [""] { return [] }
        return options.services.count == 1 ? [.string("service", options.services[0])] : [LogField("services", .strings(options.services))]
    }

    private var serviceSuffix: String {
        if options.services == [""] { return "" }
        if options.services == [GateConfiguration.everyListedService] { return " (every service it lists)" }
        let names = options.services.map { goQuote($0) }.joined(separator: ", ")
        return options.services.count == 1 ? " (service \(names))" : " (services \(names))"
    }

    private func becameServing(_ name: String, now: Int64) {
        // The file and the notification first: whoever reads the line may rely on them.
        outputs.createFile()
        let reports = withoutHealth ? "answers gRPC (no health service)" : "reports SERVING"
        if everReady {
            outputs.notify(.status("\(name) \(reports)"))
            say(.event, now, [.string("server", name), .string("status", "SERVING"), .string("was", LogField.caseName(lastReason.innermost))]) {
                "health: SERVING (was \(self.lastReason))"
            }
            return
        }
        everReady = true
        outputs.notify(.ready(status: "\(name) \(reports)"))
        let took = GoDuration(nanoseconds: now.addingSaturated(-started))
        facts.firstServingAfter = took.nanoseconds
        tellFacts()
        log.event("ready: \(name)\(serviceSuffix) \(reports), \(took) after start",
                  [.string("server", name)] + serviceFields + [.string("status", "SERVING"), .seconds("after_seconds", took)])
    }

    /// Takes an exited process if it is the agent; returns whether it was.
    func reaped(_ pid: pid_t, status: Int32) -> Bool {
        guard agent?.pid == pid else { return false }
        // What it wrote before it died is still in the pipe.
        readable()
        let failure = agent?.failure
        // Its pipes close with its record.
        agent = nil
        decoder = GateFraming.Decoder()
        guard !stopped else { return true }
        events.append(.agent(running: false))
        let exit = WaitStatus(status)
        facts.restarted(killCause ?? (exit.exitCode == 127 ? .startFailed : exit.exitCode != nil ? .exited : .crashed))
        killCause = nil
        scheduleRestart()
        let pause = GoDuration(nanoseconds: max(0, (startAt ?? 0).addingSaturated(-MonotonicClock.now())))
        let how: String
        if let failure, exit.exitCode == 127 {
            how = failure.isExec ? "could not run \(executable): \(failure.code)" : "could not start: \(failure.call): \(failure.code)"
        } else if exit.exitCode == 127 {
            how = "could not run \(executable)"
        } else {
            how = exit.exitCode.flatMap { AgentExit(rawValue: $0) }.map { "exited: \($0)" } ?? exit.description
        }
        say(.warning, MonotonicClock.now(), [.pid(pid)] + LogField.ended(exit) + [.seconds("restart_in_seconds", pause.rounded)]) {
            "health agent (pid \(pid)) \(how); starting it again " + (pause.nanoseconds == 0 ? "now" : "in \(pause.rounded)")
        }
        return true
    }

    /// The child has exited (or the gate is no longer wanted): the agent is ended and reaped.
    func stop() {
        stopped = true
        startAt = nil
        guard let pid = agent?.pid else { return }
        killAgent()
        // Reaped now if it is gone already; otherwise as its SIGCHLD comes (an agent in
        // uninterruptible sleep must not hold PID 1 up). Its pipes close either way.
        var status: Int32 = 0
        let reapedNow = waitpid(pid, &status, WNOHANG)
        if reapedNow == pid {
            // It is the agent: whether it was is known.
            _ = reaped(pid, status: status)
            return
        }
        // 0: still running, reaped when its SIGCHLD comes. -1: the supervisor's reap loop took it
        // first (ECHILD) or will (EINTR), and it is said there.
        agent?.output = nil
        agent?.control = nil
    }
}

extension GoDuration {
    /// To the millisecond, for log lines about pauses.
    var rounded: GoDuration { GoDuration(nanoseconds: nanoseconds.addingSaturated(500_000) / 1_000_000 * 1_000_000) }
}
