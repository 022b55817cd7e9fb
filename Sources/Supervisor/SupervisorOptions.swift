import Addressing
import Flags
import GateProtocol
import SystemCalls

/// `grpc-init [flags] [--] COMMAND [ARGS...]`: tini's flags under descriptive names (the
/// one-letter tini spellings are aliases), each also settable as GRPC_INIT_<NAME>.
public struct SupervisorOptions: Equatable {
    public var processGroup = false
    public var remapExit: Set<Int32> = []
    public var parentDeathSignal: Int32? = nil
    public var verbose = false
    public var warnReaped = false
    public var grace = GoDuration(nanoseconds: 0)
    /// -drain-delay: SIGTERM reaches the child this long after it reached grpc-init.
    public var drainDelay = GoDuration(nanoseconds: 0)
    /// The readiness gate; nil with -ready=false.
    public var readiness: ReadinessOptions? = nil
    public var command: [String] = []
    /// The command's arguments byte for byte, for exec (`command` is for messages).
    public var commandBytes: [[UInt8]] = []

    /// How long processes left behind (the child's group; as PID 1, everyone) get between
    /// SIGTERM and SIGKILL once the child itself has exited.
    public var leftoverGrace = SupervisorOptions.defaultLeftoverGrace
    public static let defaultLeftoverGrace = GoDuration(nanoseconds: 2_000_000_000)

    static let flagSet = FlagSet([
        .init("subreaper", .bool, aliases: ["s"], usage: "accepted for tini compatibility: grpc-init always reaps (as PID 1 or as child subreaper)"),
        .init("process-group", .bool, aliases: ["g"], usage: "send forwarded signals to the child's whole process group"),
        .init("remap-exit", .list(validate: { v in
            guard let n = Int(v), (0...255).contains(n) else { return "exit code must be 0 to 255" }
            return nil
        }), placeholder: "CODE", aliases: ["e"], usage: "treat this exit code of the child as 0 (repeatable)"),
        .init("parent-death-signal", .string, placeholder: "SIGNAL", aliases: ["p"], usage: "signal grpc-init receives when its parent dies (e.g. SIGKILL)"),
        .init("verbose", .bool, aliases: ["v"], usage: "log every event (spawn, forwarded signals, exits)"),
        .init("warn-reaped", .bool, aliases: ["w"], usage: "warn when a zombie other than the child is reaped"),
        .init("grace", .duration, usage: "after forwarding SIGTERM or SIGINT, SIGKILL the child's group if it still runs this long later (0: never)"),
        .init("leftover-grace", .duration, default: .duration(SupervisorOptions.defaultLeftoverGrace),
              usage: "once the child has exited, what it left (its group; as PID 1, every process) gets SIGTERM, and SIGKILL this long later (0: at once)"),
        .init("ready", .bool, default: .bool(true),
              usage: "run the readiness gate: a health agent finds the child's gRPC port (or -ready-addr), watches its health, and tells when it is SERVING: a log line, -ready-file, NOTIFY_SOCKET (-ready=false: off)"),
        .init("ready-addr", .string, placeholder: "ADDR",
              usage: "the child's health service is at ADDR (-addr of grpc_health_probe); default: found from the sockets the child listens on"),
        .init("ready-service", .list(validate: { $0.isEmpty ? "a service name must not be empty" : nil }), placeholder: "NAME",
              usage: "a service name the gate watches; repeatable (in GRPC_INIT_READY_SERVICE, separated by commas): ready when every one is SERVING (default: the server as a whole)"),
        .init("ready-interval", .duration, default: .duration(ReadinessOptions.defaultInterval),
              usage: "pause between Checks, for a server without Health/Watch"),
        .init("ready-file", .string, placeholder: "PATH", usage: "this file exists while the child reports SERVING"),
        .init("ready-timeout", .duration,
              usage: "not ready this long after start: stop the child as SIGTERM would, and exit with status 124 (0: wait for ever)"),
        .init("ready-tls", .bool, usage: "reach the child over TLS (a discovered TLS-only port needs no flag)"),
        .init("ready-tls-no-verify", .bool, usage: "(with -ready-tls) don't verify the child's certificate"),
        .init("ready-tls-ca-cert", .string, placeholder: "FILE", usage: "(with -ready-tls) trusted certificates for verifying the child"),
        .init("ready-tls-client-cert", .string, placeholder: "FILE", usage: "(with -ready-tls) client certificate (requires -ready-tls-client-key)"),
        .init("ready-tls-client-key", .string, placeholder: "FILE", usage: "(with -ready-tls) client private key (requires -ready-tls-client-cert)"),
        .init("ready-tls-server-name", .string, placeholder: "NAME", usage: "(with -ready-tls) the host name to verify the child's certificate for"),
        .init("ready-spiffe", .bool, usage: "reach the child with SPIFFE mTLS (credentials from the Workload API at SPIFFE_ENDPOINT_SOCKET)"),
        .init("ready-rpc-header", .list(validate: { value in
            value.contains(":") ? nil : "invalid RPC header, expected 'key: value', got \(goQuote(value))"
        }), placeholder: "'NAME: VALUE'", usage: "metadata sent with the gate's health calls (repeatable; in GRPC_INIT_READY_RPC_HEADER, separated by commas)"),
        .init("ready-connect-timeout", .duration, default: .duration(.second), usage: "timeout for each of the gate's connection attempts"),
        .init("ready-rpc-timeout", .duration, default: .duration(.second), usage: "timeout for each of the gate's health calls"),
        .init("health-addr", .string, placeholder: "ADDR",
              usage: "the health agent answers kubelet's native probes here (:8086, 127.0.0.1:8086, [::]:8086): HTTP GET /readyz (?verbose lists each service) and /livez, and grpc.health.v1.Health over h2c, from its health model and a fresh Check of the child"),
        .init("health-timeout", .duration, default: .duration(.second),
              usage: "how long an HTTP probe of -health-addr waits for the child's answer (HTTP carries no deadline; ?timeout= overrides it)"),
        .init("exit-unhealthy-after", .duration,
              usage: "after the first SERVING, not SERVING (any other status, or no answer: the agent Checks every quarter of it) this long: stop the child as SIGTERM would and exit with status 125 (not once a stop has begun)"),
        .init("exit-unresponsive-after", .duration,
              usage: "after the first SERVING, no answer at all from the child's health service this long (hung or gone): stop the child as SIGTERM would and exit with status 125; the agent Checks every quarter of it"),
        .init("drain-delay", .duration,
              usage: "on SIGTERM, answer NOT_SERVING / 503 draining at once and pass SIGTERM on this long later (a second SIGTERM, or SIGINT, passes it at once)"),
        .init("version", .bool, usage: "print the version and exit"),
    ])

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

    private static func readinessOptions(_ parsed: FlagSet.Parsed, source: (String) -> String,
                                         isSet: (String) -> Bool) throws(Failure) -> ReadinessOptions {
        var r = ReadinessOptions()
        r.addr = parsed.string("ready-addr")
        if !r.addr.isEmpty {
            // Checked now as the agent will read it: a malformed address would never be ready.
            do { _ = try Target.parse(r.addr) } catch { throw .usage("invalid \(source("ready-addr")): \(error.description)") }
        }
        let services = parsed.list("ready-service")
        r.services = services.isEmpty ? [""] : services
        r.file = parsed.string("ready-file")
        for (flag, value) in [("ready-interval", parsed.duration("ready-interval")), ("ready-connect-timeout", parsed.duration("ready-connect-timeout")),
                              ("ready-rpc-timeout", parsed.duration("ready-rpc-timeout"))] where value.nanoseconds <= 0 {
            throw .usage("\(source(flag)) must be greater than zero (specified: \(value))")
        }
        r.interval = parsed.duration("ready-interval")
        r.connectTimeout = parsed.duration("ready-connect-timeout")
        r.rpcTimeout = parsed.duration("ready-rpc-timeout")
        r.startupTimeout = parsed.duration("ready-timeout")
        if r.startupTimeout.nanoseconds < 0 {
            throw .usage("\(source("ready-timeout")) must not be negative (specified: \(r.startupTimeout))")
        }
        r.tls = TLSFlags(parsed, prefix: "ready-")
        r.spiffe = parsed.bool("ready-spiffe")
        r.rpcHeaders = parsed.list("ready-rpc-header")
        r.healthAddr = parsed.string("health-addr")
        r.healthTimeout = parsed.duration("health-timeout")
        if r.healthTimeout.nanoseconds <= 0 {
            throw .usage("\(source("health-timeout")) must be greater than zero (specified: \(r.healthTimeout))")
        }
        for flag in ["exit-unhealthy-after", "exit-unresponsive-after"] where parsed.given.contains(flag) || isSet(flag) {
            let span = parsed.duration(flag)
            if span.nanoseconds <= 0 { throw .usage("\(source(flag)) must be greater than zero (specified: \(span))") }
            if flag == "exit-unhealthy-after" { r.exitUnhealthyAfter = span } else { r.exitUnresponsiveAfter = span }
        }
        if !r.healthAddr.isEmpty && ListenAddress.parse(r.healthAddr) == nil {
            throw .usage("invalid \(source("health-addr")) \(goQuote(r.healthAddr)): want :PORT, IP:PORT or [IPv6]:PORT")
        }
        // The probe's rules, in its words, under the gate's names.
        if let problem = r.tls.problem(prefix: "-ready-") { throw .usage(problem) }
        if r.tls.tls && r.spiffe { throw .usage("\(source("ready-tls")) and \(source("ready-spiffe")) are mutually incompatible") }
        // The agent gets what the gate protocol carries: a value cut to fit would have it watch
        // another service, or read another file, and never say so.
        let carried: [(String, [String])] = [
            ("ready-addr", [r.addr]), ("ready-service", r.services), ("ready-rpc-header", r.rpcHeaders),
            ("ready-tls-ca-cert", [r.tls.caCert]), ("ready-tls-client-cert", [r.tls.clientCert]),
            ("ready-tls-client-key", [r.tls.clientKey]), ("ready-tls-server-name", [r.tls.serverName]),
        ]
        for (flag, values) in carried {
            if values.count > GateFraming.maxList { throw .usage("\(source(flag)): at most \(GateFraming.maxList) values") }
            if let long = values.first(where: { $0.utf8.count > GateFraming.maxString }) {
                throw .usage("\(source(flag)): a value of \(long.utf8.count) bytes; at most \(GateFraming.maxString)")
            }
        }
        if SupervisorMessage.configure(r.agentConfiguration).overflowsFrame {
            throw .usage("the -ready flags' values add up to more than the health agent is given (\(GateFraming.maxPayload) bytes)")
        }
        return r
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
        if unset("process-group") && environment("TINI_KILL_PROCESS_GROUP") != nil { values["process-group"] = .bool(true) }
        if unset("subreaper") && environment("TINI_SUBREAPER") != nil { values["subreaper"] = .bool(true) }
        if unset("verbose"), let text = environment("TINI_VERBOSITY") {
            let digits = text.drop { $0 == " " || $0 == "\t" }.prefix { $0.isASCII && $0.isNumber }
            values["verbose"] = .bool((Int(digits.prefix(9)) ?? 0) >= 2)
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
            // A list variable holds several values separated by commas or spaces.
            let values: [String]
            if flag.name == "ready-rpc-header" {
                // A header holds spaces ("name: value"): only commas separate them.
                values = raw.split(separator: ",").map { String($0.drop(while: { $0 == " " })) }
            } else if flag.name == "ready-service" {
                // Commas only, and every entry named: "db,,api" is a mistake, not the server.
                values = raw.split(separator: ",", omittingEmptySubsequences: false).map { String($0.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed()) }
            } else if case .list = flag.kind {
                values = raw.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            } else {
                values = [raw]
            }
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
        if parsed.bool("version") { return .version(verbose: parsed.bool("verbose")) }
        /// Where a value came from, for messages: the flag, or the variable that set it.
        func source(_ flag: String) -> String {
            fromEnvironment.contains(flag) && !parsed.given.contains(flag) ? environmentName(flag) : "-" + flag
        }
        var o = SupervisorOptions()
        o.processGroup = parsed.bool("process-group")
        o.remapExit = Set(parsed.list("remap-exit").compactMap { Int32($0) })
        o.verbose = parsed.bool("verbose")
        o.warnReaped = parsed.bool("warn-reaped")
        o.grace = parsed.duration("grace")
        if o.grace.nanoseconds < 0 { throw .usage("\(source("grace")) must not be negative (specified: \(o.grace))") }
        o.leftoverGrace = parsed.duration("leftover-grace")
        if o.leftoverGrace.nanoseconds < 0 {
            throw .usage("\(source("leftover-grace")) must not be negative (specified: \(o.leftoverGrace))")
        }
        let signalName = parsed.string("parent-death-signal")
        if !signalName.isEmpty {
            guard let signo = Signals.parse(signalName) else { throw .usage("invalid signal \(goQuote(signalName)) for \(source("parent-death-signal"))") }
            o.parentDeathSignal = signo
        }
        o.drainDelay = parsed.duration("drain-delay")
        if o.drainDelay.nanoseconds < 0 { throw .usage("\(source("drain-delay")) must not be negative (specified: \(o.drainDelay))") }
        let gateFlags = flagSet.flags.map(\.name).filter { $0.hasPrefix("ready-") || $0.hasPrefix("health-") || $0.hasPrefix("exit-") }
        if !parsed.bool("ready") {
            if let flag = gateFlags.first(where: { parsed.given.contains($0) || fromEnvironment.contains($0) }) {
                throw .usage("\(source(flag)) has no effect with \(source("ready"))=false")
            }
        } else {
            o.readiness = try readinessOptions(parsed, source: source, isSet: { fromEnvironment.contains($0) })
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
