import Addressing
import Flags
import GateProtocol
import Glibc
import SystemCalls

/// `grpc-init [flags] [--] COMMAND [ARGS...]`: tini's flags under descriptive names (the
/// one-letter tini spellings are aliases), each also settable as GRPC_INIT_<NAME>.
public struct SupervisorOptions: Equatable {
    public var processGroup = false
    public var remapExit: Set<Int32> = []
    public var parentDeathSignal: Int32? = nil
    public var verbose = false
    /// -log-format: grpc-init's own lines as text or as JSON.
    public var logFormat = LogFormat.text
    public var warnReaped = false
    public var grace = GoDuration(nanoseconds: 0)
    /// -drain-delay: SIGTERM reaches the child this long after it reached grpc-init.
    public var drain = Drain()
    /// -stop-signal: the signal that begins the stop (the drain, STOPPING=1, -grace) and reaches
    /// the child at the end of the drain; the drain's own.
    public var stopSignal: Int32 {
        get { drain.signal }
        set { drain.signal = newValue }
    }
    /// -rewrite-signal FROM:TO: the child gets TO for FROM received (0: nothing).
    public var rewriteSignals: [Int32: Int32] = [:]
    /// The readiness gate; nil with -ready=false.
    public var readiness: GateConfiguration? = nil
    public var command: [String] = []
    /// The command's arguments byte for byte, for exec (`command` is for messages).
    public var commandBytes: [[UInt8]] = []

    /// How long processes left behind (the child's group; as PID 1, everyone) get between
    /// SIGTERM and SIGKILL once the child itself has exited.
    public var leftoverGrace = SupervisorOptions.defaultLeftoverGrace
    public static let defaultLeftoverGrace = GoDuration(nanoseconds: 2_000_000_000)

    /// Each flag, declared once: its key reads its value.
    enum Keys {
        static let subreaper = Flag<Bool>("subreaper", aliases: ["s"], usage: "accepted for tini compatibility: grpc-init always reaps (as PID 1 or as child subreaper)")
        static let processGroup = Flag<Bool>("process-group", aliases: ["g"], usage: "send forwarded signals to the child's whole process group")
        static let remapExit = Flag<[String]>("remap-exit", placeholder: "CODE", aliases: ["e"], usage: "treat this exit code of the child as 0 (repeatable)",
                                              validate: { v in
            guard let n = Int(v), (0...255).contains(n) else { return "exit code must be 0 to 255" }
            return nil
        })
        static let parentDeathSignal = Flag<String>("parent-death-signal", placeholder: "SIGNAL", aliases: ["p"], usage: "signal grpc-init receives when its parent dies (e.g. SIGKILL)")
        static let verbose = Flag<Bool>("verbose", aliases: ["v"], usage: "log every event (spawn, forwarded signals, exits)")
        static let logFormat = Flag<String>("log-format", default: "text", placeholder: "FORMAT",
              usage: "grpc-init's own lines: text ([grpc-init] ...) or json (one object per line: time, level, msg and the event's fields); the child's output is untouched")
        static let warnReaped = Flag<Bool>("warn-reaped", aliases: ["w"], usage: "warn when a zombie other than the child is reaped")
        static let grace = Flag<GoDuration>("grace", usage: "after forwarding the stop signal (SIGTERM unless -stop-signal) or SIGINT, SIGKILL the child's group if it still runs this long later (0: never)")
        static let leftoverGrace = Flag<GoDuration>("leftover-grace", default: SupervisorOptions.defaultLeftoverGrace,
              usage: "once the child has exited, what it left (its group; as PID 1, every process) gets SIGTERM, and SIGKILL this long later (0: at once)")
        static let ready = Flag<Bool>("ready", default: true,
              usage: "run the readiness gate: a health agent finds the child's gRPC port (or -ready-addr), watches its health, and tells when it is SERVING: a log line, -ready-file, NOTIFY_SOCKET (-ready=false: off)")
        static let drainDelay = Flag<GoDuration>("drain-delay",
              usage: "on the stop signal (SIGTERM unless -stop-signal), answer NOT_SERVING / 503 draining at once and pass it on this long later (a second one, SIGTERM or SIGINT, passes it at once)")
        static let stopSignal = Flag<String>("stop-signal", default: "SIGTERM", placeholder: "SIGNAL",
              usage: "the signal that begins the stop (SIGQUIT, QUIT, 3, RTMIN+2; what Kubernetes' lifecycle.stopSignal or the image's STOPSIGNAL sends): -drain-delay, STOPPING=1 and -grace start on it, and it reaches the child when the drain ends; SIGTERM and SIGINT still stop the child at once")
        static let rewriteSignal = Flag<[String]>("rewrite-signal", placeholder: "FROM:TO",
              usage: "the child gets signal TO for FROM (15:3, TERM:QUIT; TO 0: not passed on), as dumb-init --rewrite; grpc-init reacts to FROM (a rewritten stop signal still drains); repeatable (in GRPC_INIT_REWRITE_SIGNAL, separated by commas)",
              validate: { SupervisorOptions.rewrite($0).problem })
        static let version = Flag<Bool>("version", usage: "print the version and exit")
    }

    static let flagSet = FlagSet([Keys.subreaper.definition, Keys.processGroup.definition, Keys.remapExit.definition, Keys.parentDeathSignal.definition,
                                  Keys.verbose.definition, Keys.logFormat.definition, Keys.warnReaped.definition, Keys.grace.definition, Keys.leftoverGrace.definition,
                                  Keys.ready.definition] + GateFlagDefinitions.all + [Keys.drainDelay.definition, Keys.stopSignal.definition,
                                                                                    Keys.rewriteSignal.definition, Keys.version.definition])

    public static var usage: String {
        """
        Usage: grpc-init [flags] [--] COMMAND [ARGS...]
               grpc-init grpc_health_probe [probe flags]   (or run through a grpc_health_probe symlink)
               grpc-init --install DIR                     (symlink grpc_health_probe in DIR)

        Runs COMMAND as its child: forwards every signal, reaps every zombie, and exits with the
        child's status (128+N when the child was killed by signal N). Its own: 1 when it cannot
        start, 124 when -ready-timeout stopped the child, 125 when -exit-unhealthy-after or
        -exit-unresponsive-after did, 126 and 127 when COMMAND cannot be run or is not found.

        With no flags it gates readiness: a health agent (a process of its own) finds the port the
        child listens on, watches grpc.health.v1.Health there, logs each change and keeps
        -ready-file and NOTIFY_SOCKET current.

        grpc_health_probe takes the reference tool's flags (its -h prints them as that tool does);
        with no -addr, inside a grpc-init container, it asks the health agent instead.
        -addr also takes [IPv6]:PORT, :PORT (this host), [::]:PORT (either loopback), unix:PATH,
        unix:@NAME and unix-abstract:NAME (abstract), passthrough:///HOST:PORT, dns:///HOST:PORT and
        dns://RESOLVER/IP:PORT. -alts is refused: ALTS needs Google Cloud's handshaker service.
        Its exit codes: 0 SERVING, 1 invalid arguments, 2 connection failed or timed out, 3 RPC
        failed or timed out, 4 not SERVING, 20 SPIFFE credentials unavailable.

        Flags (long names with one or two dashes; one-letter names as tini reads them: -sg, -vvv, -e143;
        each also read from GRPC_INIT_<NAME>, e.g. GRPC_INIT_GRACE=10s, empty is unset; tini's
        TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP and TINI_VERBOSITY are read as tini reads them):
        \(flagSet.usage())
        """
    }

    public enum Parsed: Equatable {
        case run(SupervisorOptions)
        /// -version; with -v, the linked components too.
        case version(verbose: Bool)
    }

    public enum Failure: Error, Equatable {
        /// The usage is to be printed: after the message, or alone when it was asked for.
        case usage(String?)
    }

    /// The gate's flags read: each as `GateConfiguration.fields` declares it, then the rules
    /// that involve more than one value, or code the gate protocol does not link.
    private static func gateConfiguration(_ parsed: FlagSet.Parsed, source: (String) -> String,
                                          isSet: @escaping (String) -> Bool) throws(Failure) -> GateConfiguration {
        var read = GateFlagValues(parsed, isGiven: isSet)
        try? GateConfiguration.fields(&read)
        let g = read.configuration
        func flag(_ field: PartialKeyPath<GateConfiguration>) -> String { source(GateConfiguration.name(of: field)) }
        if !g.addr.isEmpty {
            // Checked now as the agent will read it: a malformed address would never be ready.
            do { _ = try Target.parse(g.addr) } catch { throw .usage("invalid \(flag(\.addr)): \(error.description)") }
        }
        if g.services.count > 1 && g.services.contains(GateConfiguration.everyListedService) {
            throw .usage("\(flag(\.services)) \"*\" (every service the server lists) cannot be given with service names")
        }
        var seen: Set<String> = []
        for service in g.services where !seen.insert(service).inserted {
            throw .usage("\(flag(\.services)) \(goQuote(service)) is given twice")
        }
        // Each span within its field's range, and each value within what the gate protocol
        // carries: a value cut to fit would have the agent watch another service, or read
        // another file, and never say so.
        let problem = withoutActuallyEscaping(source) { source in
            var check = GateLimits(g, source: source)
            try? GateConfiguration.fields(&check)
            return check.problem
        }
        if let problem { throw .usage(problem) }
        if !g.healthAddr.isEmpty && ListenAddress.parse(g.healthAddr) == nil {
            throw .usage("invalid \(flag(\.healthAddr)) \(goQuote(g.healthAddr)): want :PORT, IP:PORT or [IPv6]:PORT")
        }
        // The probe's rules, in its words, under the gate's names.
        if let problem = g.tls.problem(prefix: "-ready-") { throw .usage(problem) }
        if g.tls.tls && g.spiffe { throw .usage("\(flag(\.tls.tls)) and \(flag(\.spiffe)) are mutually incompatible") }
        if SupervisorMessage.configure(g).overflowsFrame {
            throw .usage("the -ready flags' values add up to more than the health agent is given (\(GateFraming.maxPayload) bytes)")
        }
        return g
    }

    /// One -rewrite-signal value read: FROM and TO (0: dropped), or why it is refused.
    static func rewrite(_ text: String) -> (from: Int32, to: Int32, problem: String?) {
        let sides = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard sides.count == 2 else { return (0, 0, "want FROM:TO, signals by name or number (15:3, TERM:QUIT, 10:0)") }
        guard let from = Signals.parse(sides[0]) else { return (0, 0, "unknown signal \(goQuote(sides[0]))") }
        let to: Int32
        if sides[1] == "0" { to = 0 } else {
            guard let signo = Signals.parse(sides[1]) else { return (0, 0, "unknown signal \(goQuote(sides[1]))") }
            to = signo
        }
        if let why = unforwardable(from) { return (0, 0, "\(Signals.name(from)) \(why)") }
        if to == SIGKILL || to == SIGSTOP { return (0, 0, "\(Signals.name(to)) is not forwarded: rewrite to a signal the child can catch") }
        if to > SIGSYS && to < Signals.realTimeMin {
            return (0, 0, "signal \(to) is the C library's own: the child would not take it as a stop (rewrite to a signal from 1 to 31, or RTMIN and above)")
        }
        return (from, to, nil)
    }

    private static func rewriteName(_ signo: Int32) -> String { signo == 0 ? "0" : Signals.name(signo) }

    /// Why grpc-init never receives `signo` to forward or to stop on, if it does not.
    private static func unforwardable(_ signo: Int32) -> String? {
        if signo == SIGKILL || signo == SIGSTOP { return "cannot be caught" }
        if signo == SIGCHLD { return "is grpc-init's own (it reaps on it)" }
        if signo > SIGSYS && signo < Signals.realTimeMin { return "is the C library's own (ignored, never forwarded)" }
        return nil
    }

    /// -stop-signal and -rewrite-signal, checked together: the stop signal must be one grpc-init
    /// catches, and not dropped; a signal is rewritten once.
    private static func stopSignals(_ parsed: FlagSet.Parsed, source: (String) -> String, into o: inout SupervisorOptions) throws(Failure) {
        let name = parsed[Keys.stopSignal]
        guard let stop = Signals.parse(name) else { throw .usage("invalid signal \(goQuote(name)) for \(source(Keys.stopSignal.name))") }
        if let why = unforwardable(stop) { throw .usage("\(source(Keys.stopSignal.name)) \(Signals.name(stop)) \(why)") }
        o.stopSignal = stop
        for text in parsed[Keys.rewriteSignal] {
            let (from, to, _) = rewrite(text)
            if let earlier = o.rewriteSignals[from] {
                throw .usage("\(source(Keys.rewriteSignal.name)): \(Signals.name(from)) rewritten twice (to \(rewriteName(earlier)) and to \(rewriteName(to)))")
            }
            o.rewriteSignals[from] = to
        }
        if o.rewriteSignals[stop] == 0 {
            throw .usage("\(source(Keys.rewriteSignal.name)) drops the stop signal \(Signals.name(stop)): the child would never be asked to stop")
        }
    }

    /// The environment variable that sets `flag`: GRPC_INIT_ and the name in upper snake case.
    static func environmentName(_ flag: String) -> String {
        "GRPC_INIT_" + String(flag.uppercased().map { $0 == "-" ? "_" : $0 })
    }

    /// tini's variables, read as tini reads them where the matching GRPC_INIT_* variable is not
    /// set: TINI_SUBREAPER and TINI_KILL_PROCESS_GROUP turn their feature on when they are set at
    /// all (even empty), TINI_VERBOSITY is a number (C's atoi) whose 2 or more is -v.
    private static func tiniVariables(_ environment: (String) -> String?, into values: inout [String: FlagSet.Value]) {
        func unset(_ flag: String) -> Bool { environment(environmentName(flag)).map { $0.isEmpty } ?? true }
        if unset(Keys.processGroup.name) && environment("TINI_KILL_PROCESS_GROUP") != nil { Keys.processGroup.set(true, in: &values) }
        if unset(Keys.subreaper.name) && environment("TINI_SUBREAPER") != nil { Keys.subreaper.set(true, in: &values) }
        if unset(Keys.verbose.name), let text = environment("TINI_VERBOSITY") {
            let digits = text.drop { $0 == " " || $0 == "\t" }.prefix { $0.isASCII && $0.isNumber }
            Keys.verbose.set((Int(digits.prefix(9)) ?? 0) >= 2, in: &values)
        }
    }

    /// Parses `arguments` (without argv[0]) over the GRPC_INIT_* variables of `environment`.
    /// `rawArguments`, the same arguments as bytes, give the command its exact bytes.
    public static func parse(_ arguments: [String], rawArguments: [[UInt8]]? = nil,
                             environment: (String) -> String? = Environment.value) throws(Failure) -> Parsed {
        var initial = flagSet.defaults()
        tiniVariables(environment, into: &initial)
        var fromEnvironment: Set<String> = []
        for flag in flagSet.flags {
            // Empty counts as unset, as tini reads its variables (and as a template that leaves a
            // variable blank means it).
            guard let raw = environment(environmentName(flag.name)), !raw.isEmpty else { continue }
            fromEnvironment.insert(flag.name)
            let values: [String]
            if case .list = flag.kind { values = flag.splitting.split(raw) } else { values = [raw] }
            for value in values {
                if let problem = FlagSet.assign(flag, value, into: &initial) {
                    throw .usage("invalid value \(goQuote(value)) for \(environmentName(flag.name)): \(problem)")
                }
            }
        }
        let parsed: FlagSet.Parsed
        do {
            // Short letters as tini reads them (getopt: -vvv, -sg, -e143), long names as Go does.
            parsed = try flagSet.parse(arguments, startingWith: initial, bundlingLetters: true)
        } catch {
            switch error {
            case .help: throw .usage(nil)
            case .invalid(let message): throw .usage(message)
            }
        }
        if parsed[Keys.version] { return .version(verbose: parsed[Keys.verbose]) }
        /// Where a value came from, for messages: the flag, or the variable that set it.
        func source(_ flag: String) -> String {
            fromEnvironment.contains(flag) && !parsed.given.contains(flag) ? environmentName(flag) : "-" + flag
        }
        var o = SupervisorOptions()
        let format = parsed[Keys.logFormat]
        guard let logFormat = LogFormat(rawValue: format) else {
            throw .usage("invalid value \(goQuote(format)) for \(source(Keys.logFormat.name)): want text or json")
        }
        o.logFormat = logFormat
        o.processGroup = parsed[Keys.processGroup]
        o.remapExit = Set(parsed[Keys.remapExit].compactMap { Int32($0) })
        o.verbose = parsed[Keys.verbose]
        o.warnReaped = parsed[Keys.warnReaped]
        o.grace = parsed[Keys.grace]
        if o.grace.nanoseconds < 0 { throw .usage("\(source(Keys.grace.name)) must not be negative (specified: \(o.grace))") }
        o.leftoverGrace = parsed[Keys.leftoverGrace]
        if o.leftoverGrace.nanoseconds < 0 {
            throw .usage("\(source(Keys.leftoverGrace.name)) must not be negative (specified: \(o.leftoverGrace))")
        }
        let signalName = parsed[Keys.parentDeathSignal]
        if !signalName.isEmpty {
            guard let signo = Signals.parse(signalName) else { throw .usage("invalid signal \(goQuote(signalName)) for \(source(Keys.parentDeathSignal.name))") }
            o.parentDeathSignal = signo
        }
        o.drain.delay = parsed[Keys.drainDelay]
        if o.drain.delay.nanoseconds < 0 { throw .usage("\(source(Keys.drainDelay.name)) must not be negative (specified: \(o.drain.delay))") }
        try stopSignals(parsed, source: source, into: &o)
        if !parsed[Keys.ready] {
            if let flag = GateFlagDefinitions.all.map(\.name).first(where: { parsed.given.contains($0) || fromEnvironment.contains($0) }) {
                throw .usage("\(source(flag)) has no effect with \(source(Keys.ready.name))=false")
            }
        } else {
            o.readiness = try gateConfiguration(parsed, source: source, isSet: { fromEnvironment.contains($0) })
        }
        o.command = parsed.remaining
        if let rawArguments, rawArguments.count >= o.command.count {
            o.commandBytes = Array(rawArguments.suffix(o.command.count))
        } else {
            o.commandBytes = o.command.map { Array($0.utf8) }
        }
        if o.command.isEmpty { throw .usage("no command given (usage: grpc-init [flags] [--] COMMAND [ARGS...])") }
        return .run(o)
    }
}
