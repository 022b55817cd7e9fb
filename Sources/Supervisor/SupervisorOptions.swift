import Addressing
import Flags
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
    /// The readiness gate, when -ready-addr is given.
    public var readiness: ReadinessOptions? = nil
    public var command: [String] = []
    /// The command's arguments byte for byte, for exec (`command` is for messages).
    public var commandBytes: [[UInt8]] = []

    /// How long processes left in the child's group get between SIGTERM and SIGKILL once the
    /// child itself has exited.
    public static let leftoverGrace = GoDuration(nanoseconds: 2_000_000_000)

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
        .init("ready-addr", .string, placeholder: "ADDR",
              usage: "probe the child's health service at ADDR (-addr of grpc_health_probe) until it reports SERVING, then tell: a log line, -ready-file, NOTIFY_SOCKET"),
        .init("ready-service", .string, placeholder: "NAME", usage: "the service name the readiness probes check (default: the server as a whole)"),
        .init("ready-interval", .duration, default: .duration(ReadinessOptions.defaultInterval),
              usage: "pause between readiness probes"),
        .init("ready-file", .string, placeholder: "PATH", usage: "create this file once the child is ready"),
        .init("version", .bool, usage: "print the version and exit"),
    ])

    public static var usage: String {
        """
        Usage: grpc-init [flags] [--] COMMAND [ARGS...]
               grpc-init grpc_health_probe [probe flags]   (or run through a grpc_health_probe symlink)
               grpc-init --install DIR                     (symlink grpc_health_probe in DIR)

        Runs COMMAND as its child: forwards every signal, reaps every zombie, and exits with the
        child's status (128+N when the child was killed by signal N).

        Flags (one or two dashes; each also read from GRPC_INIT_<NAME>, e.g. GRPC_INIT_GRACE=10s; empty is unset):
        \(flagSet.usage())
        """
    }

    public enum Parsed: Equatable {
        case run(SupervisorOptions)
        case version
    }

    public enum Failure: Error, Equatable {
        /// The usage is to be printed: after the message, or alone when it was asked for.
        case usage(String?)
    }

    /// The environment variable that sets `flag`: GRPC_INIT_ and the name in upper snake case.
    static func environmentName(_ flag: String) -> String {
        "GRPC_INIT_" + String(flag.uppercased().map { $0 == "-" ? "_" : $0 })
    }

    /// Parses `arguments` (without argv[0]) over the GRPC_INIT_* variables of `environment`.
    /// `rawArguments`, the same arguments as bytes, give the command its exact bytes.
    public static func parse(_ arguments: [String], rawArguments: [[UInt8]]? = nil,
                             environment: (String) -> String? = Environment.value) throws(Failure) -> Parsed {
        var initial = flagSet.defaults()
        var fromEnvironment: Set<String> = []
        for flag in flagSet.flags {
            // Empty counts as unset, as tini reads its variables (and as a template that leaves a
            // variable blank means it).
            guard let raw = environment(environmentName(flag.name)), !raw.isEmpty else { continue }
            fromEnvironment.insert(flag.name)
            // A list variable holds several values separated by commas or spaces.
            let values: [String]
            if case .list = flag.kind {
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
            parsed = try flagSet.parse(arguments, startingWith: initial)
        } catch {
            switch error {
            case .help: throw .usage(nil)
            case .invalid(let message): throw .usage(message)
            }
        }
        if parsed.bool("version") { return .version }
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
        let signalName = parsed.string("parent-death-signal")
        if !signalName.isEmpty {
            guard let signo = Signals.parse(signalName) else { throw .usage("invalid signal \(goQuote(signalName)) for \(source("parent-death-signal"))") }
            o.parentDeathSignal = signo
        }
        let readyAddr = parsed.string("ready-addr")
        if readyAddr.isEmpty {
            for flag in ["ready-service", "ready-file"] where !parsed.string(flag).isEmpty {
                throw .usage("\(source(flag)) needs -ready-addr")
            }
        } else {
            // Checked now as the probe will read it: a malformed address would never be ready.
            do { _ = try Target.parse(readyAddr) } catch { throw .usage("invalid \(source("ready-addr")): \(error.description)") }
            let interval = parsed.duration("ready-interval")
            if interval.nanoseconds <= 0 { throw .usage("\(source("ready-interval")) must be greater than zero (specified: \(interval))") }
            o.readiness = ReadinessOptions(addr: readyAddr, service: parsed.string("ready-service"), interval: interval,
                                           file: parsed.string("ready-file"))
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
