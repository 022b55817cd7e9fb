import Glibc
import Flags
import GateProtocol
import SystemCalls
import XCTest
@testable import Supervisor

final class SupervisorOptionsTests: XCTestCase {
    func parse(_ arguments: [String], _ variables: [String: String] = [:]) throws -> SupervisorOptions {
        let parsed = try SupervisorOptions.parse(arguments, environment: { variables[$0] })
        guard case .run(let options) = parsed else {
            XCTFail("\(arguments) parsed as \(parsed), not a run")
            throw SupervisorOptions.Failure.usage("not a run")
        }
        return options
    }

    func failure(_ arguments: [String], _ variables: [String: String] = [:]) -> String? {
        do {
            _ = try SupervisorOptions.parse(arguments, environment: { variables[$0] })
            return nil
        } catch {
            guard case .usage(let message) = error else { return nil }
            return message
        }
    }

    func testVariablesSetFlagsAndTheCommandLineWins() throws {
        let options = try parse(["-grace", "3s", "--", "server"], ["GRPC_INIT_GRACE": "10s", "GRPC_INIT_VERBOSE": "true",
                                                                   "GRPC_INIT_REMAP_EXIT": "143, 2"])
        XCTAssertEqual(options.grace.nanoseconds, 3_000_000_000)
        XCTAssertTrue(options.verbose)
        XCTAssertEqual(options.remapExit, [143, 2])
        XCTAssertEqual(options.command, ["server"])
    }

    func testShortLettersAsGetoptReadsThem() throws {
        let bundled = try parse(["-sgv", "-e143", "-e", "2", "-pSIGKILL", "server", "-x"])
        XCTAssertTrue(bundled.processGroup && bundled.verbose)
        XCTAssertEqual(bundled.remapExit, [143, 2])
        XCTAssertEqual(bundled.parentDeathSignal, SIGKILL)
        XCTAssertEqual(bundled.command, ["server", "-x"], "options end at the command: its own are its own")
        XCTAssertEqual(try parse(["-ve143", "--", "server"]).remapExit, [143])
        XCTAssertEqual(try parse(["--grace=2s", "-leftover-grace", "500ms", "server"]).leftoverGrace.nanoseconds, 500_000_000)
        XCTAssertEqual(failure(["-vq", "server"]), "flag provided but not defined: -q")
        XCTAssertEqual(failure(["-ve", "300", "server"]), "invalid value \"300\" for flag -e: exit code must be 0 to 255")
        XCTAssertEqual(failure(["-sp"]), "flag needs an argument: -p")
    }

    func testTinisVariablesAsTiniReadsThem() throws {
        XCTAssertTrue(try parse(["server"], ["TINI_KILL_PROCESS_GROUP": ""]).processGroup, "set at all, even empty")
        XCTAssertTrue(try parse(["server"], ["TINI_KILL_PROCESS_GROUP": "0"]).processGroup, "set at all, even 0")
        XCTAssertFalse(try parse(["server"], ["TINI_KILL_PROCESS_GROUP": "", "GRPC_INIT_PROCESS_GROUP": "false"]).processGroup)
        XCTAssertTrue(try parse(["server"], ["TINI_VERBOSITY": "2"]).verbose)
        XCTAssertTrue(try parse(["server"], ["TINI_VERBOSITY": " 3x"]).verbose, "atoi: leading blanks, then digits")
        XCTAssertFalse(try parse(["server"], ["TINI_VERBOSITY": "1"]).verbose)
        XCTAssertFalse(try parse(["server"], ["TINI_VERBOSITY": "3", "GRPC_INIT_VERBOSE": "0"]).verbose)
        XCTAssertEqual(try parse(["server"], ["TINI_SUBREAPER": ""]), try parse(["-s", "server"]))
    }

    func testEmptyVariablesCountAsUnset() throws {
        let names = ["VERBOSE", "GRACE", "REMAP_EXIT", "PARENT_DEATH_SIGNAL", "READY", "READY_ADDR", "READY_FILE", "READY_INTERVAL",
                     "READY_TLS", "READY_RPC_HEADER", "READY_TIMEOUT"]
        let options = try parse(["true"], Dictionary(uniqueKeysWithValues: names.map { ("GRPC_INIT_" + $0, "") }))
        XCTAssertEqual(options, try parse(["true"]))
    }

    func testMessagesNameWhereTheValueCameFrom() {
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_GRACE": "-1s"]), "GRPC_INIT_GRACE must not be negative (specified: -1s)")
        XCTAssertEqual(failure(["-grace=-1s", "true"]), "-grace must not be negative (specified: -1s)")
        XCTAssertEqual(failure(["-grace=-2s", "true"], ["GRPC_INIT_GRACE": "-1s"]), "-grace must not be negative (specified: -2s)")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_READY_FILE": "/r", "GRPC_INIT_READY": "0"]),
                       "GRPC_INIT_READY_FILE has no effect with GRPC_INIT_READY=false")
        XCTAssertEqual(failure(["-ready=false", "true"], ["GRPC_INIT_READY_FILE": "/r"]), "GRPC_INIT_READY_FILE has no effect with -ready=false")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_GRACE": "soon"]), "invalid value \"soon\" for GRPC_INIT_GRACE: parse error")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_PARENT_DEATH_SIGNAL": "NOPE"]), "invalid signal \"NOPE\" for GRPC_INIT_PARENT_DEATH_SIGNAL")
    }

    func testEveryVariableSetsItsFlag() throws {
        let options = try parse(["server"], [
            "GRPC_INIT_SUBREAPER": "true", "GRPC_INIT_PROCESS_GROUP": "1", "GRPC_INIT_REMAP_EXIT": "143",
            "GRPC_INIT_PARENT_DEATH_SIGNAL": "SIGKILL", "GRPC_INIT_VERBOSE": "t", "GRPC_INIT_WARN_REAPED": "TRUE",
            "GRPC_INIT_GRACE": "1m30s", "GRPC_INIT_READY_ADDR": "unix:///run/s.sock", "GRPC_INIT_READY_SERVICE": "svc",
            "GRPC_INIT_READY_INTERVAL": "20ms", "GRPC_INIT_READY_FILE": "/run/ready", "GRPC_INIT_READY_TIMEOUT": "1m",
            "GRPC_INIT_READY_TLS": "true", "GRPC_INIT_READY_TLS_CA_CERT": "/ca.pem", "GRPC_INIT_READY_TLS_SERVER_NAME": "svc.local",
            "GRPC_INIT_READY_TLS_CLIENT_CERT": "/c.pem", "GRPC_INIT_READY_TLS_CLIENT_KEY": "/c.key",
            "GRPC_INIT_READY_RPC_HEADER": "x-a: 1, x-b: two words", "GRPC_INIT_READY_CONNECT_TIMEOUT": "2s",
            "GRPC_INIT_READY_RPC_TIMEOUT": "3s",
        ])
        XCTAssertTrue(options.processGroup)
        XCTAssertEqual(options.remapExit, [143])
        XCTAssertEqual(options.parentDeathSignal, 9)
        XCTAssertTrue(options.verbose)
        XCTAssertTrue(options.warnReaped)
        XCTAssertEqual(options.grace.nanoseconds, 90_000_000_000)
        var readiness = GateConfiguration()
        readiness.addr = "unix:///run/s.sock"
        readiness.services = ["svc"]
        readiness.interval = GoDuration(nanoseconds: 20_000_000)
        readiness.file = "/run/ready"
        readiness.startupTimeout = GoDuration(nanoseconds: 60_000_000_000)
        readiness.tls.tls = true
        readiness.tls.caCert = "/ca.pem"
        readiness.tls.serverName = "svc.local"
        readiness.tls.clientCert = "/c.pem"
        readiness.tls.clientKey = "/c.key"
        readiness.rpcHeaders = ["x-a: 1", "x-b: two words"]
        readiness.connectTimeout = GoDuration(nanoseconds: 2_000_000_000)
        readiness.rpcTimeout = GoDuration(nanoseconds: 3_000_000_000)
        XCTAssertEqual(options.readiness, readiness)
    }

    /// Each gate flag is a field of the one configuration, declared in its table (the table's
    /// names are what the checks of its values say), and the supervisor takes each one.
    func testEveryGateFlagIsAFieldOfTheConfiguration() {
        struct Names: GateFieldVisitor {
            var flags: [String] = []
            var others: [String] = []
            mutating func note(_ name: String, _ isFlag: Bool) { if isFlag { flags.append(name) } else { others.append(name) } }
            mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
                note(name, flag != nil)
            }
            mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {
                note(name, flag != nil)
            }
            mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                                _ flag: GateFlag<[String]>?) { note(name, flag != nil) }
            mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                                _ flag: GateFlag<GoDuration>?) { note(name, flag != nil) }
            mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                                _ flag: GateFlag<GoDuration>?) { note(name, flag != nil) }
        }
        var walk = Names()
        try? GateConfiguration.fields(&walk)
        XCTAssertEqual(GateFlagDefinitions.all.map(\.name), walk.flags)
        XCTAssertEqual(walk.others, ["local probe socket", "answer interval"], "set by the supervisor, not by a flag")
        for name in walk.flags { XCTAssertNotNil(SupervisorOptions.flagSet.flag(named: name), name) }
        // The fields the supervisor's own rules name, by their key paths.
        XCTAssertEqual([\GateConfiguration.addr, \.services, \.healthAddr, \.tls.tls, \.tls.clientCert, \.tls.clientKey, \.spiffe]
                        .map { GateConfiguration.name(of: $0) },
                       ["ready-addr", "ready-service", "health-addr", "ready-tls", "ready-tls-client-cert", "ready-tls-client-key", "ready-spiffe"])
        XCTAssertEqual(GateConfiguration.name(of: \.servesHealth), "", "not a field")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_READY_INTERVAL": "0s"]), "GRPC_INIT_READY_INTERVAL must be greater than zero (specified: 0s)")
        XCTAssertEqual(failure(["-ready-timeout=-1s", "true"]), "-ready-timeout must not be negative (specified: -1s)")
        XCTAssertEqual(failure(["-exit-unresponsive-after=0", "true"]), "-exit-unresponsive-after must be greater than zero (specified: 0s)")
        XCTAssertEqual(failure(["-ready-file", String(repeating: "f", count: 5000), "true"]), "-ready-file: a value of 5000 bytes; at most 4096")
        XCTAssertEqual(failure((0..<33).flatMap { ["-ready-service", "s\($0)"] } + ["true"]), "-ready-service: at most 32 values")
        XCTAssertEqual(try parse(["-drain-delay=5s", "-ready=false", "true"]).drain, Drain(delay: GoDuration(nanoseconds: 5_000_000_000)))
    }

    func testTheGateIsOnByDefaultAndOffWithReadyFalse() throws {
        XCTAssertEqual(try parse(["server"]).readiness, GateConfiguration())
        XCTAssertNil(try parse(["-ready=false", "server"]).readiness)
        XCTAssertNil(try parse(["server"], ["GRPC_INIT_READY": "false"]).readiness)
    }

    func testLongNamesAndTinisLettersAreTheSameFlags() throws {
        let long = try parse(["--process-group", "--remap-exit", "3", "--parent-death-signal", "TERM", "--verbose", "--warn-reaped",
                              "--subreaper", "--", "server"])
        let short = try parse(["-g", "-e", "3", "-p", "TERM", "-v", "-w", "-s", "server"])
        XCTAssertEqual(long, short)
        XCTAssertTrue(long.processGroup && long.verbose && long.warnReaped)
        XCTAssertEqual(long.remapExit, [3])
        XCTAssertEqual(long.parentDeathSignal, 15)
    }

    func testBooleanSpellingsAsGoReadsThem() throws {
        for spelling in ["1", "t", "T", "true", "TRUE", "True"] {
            XCTAssertTrue(try parse(["x"], ["GRPC_INIT_VERBOSE": spelling]).verbose, spelling)
        }
        for spelling in ["0", "f", "F", "false", "FALSE", "False"] {
            XCTAssertFalse(try parse(["x"], ["GRPC_INIT_VERBOSE": spelling]).verbose, spelling)
        }
        XCTAssertEqual(failure(["x"], ["GRPC_INIT_VERBOSE": "yes"]), "invalid value \"yes\" for GRPC_INIT_VERBOSE: parse error")
        // The command line wins over the environment, both ways.
        XCTAssertFalse(try parse(["-v=false", "x"], ["GRPC_INIT_VERBOSE": "true"]).verbose)
        XCTAssertTrue(try parse(["-v", "x"], ["GRPC_INIT_VERBOSE": "false"]).verbose)
    }

    func testTheCommandKeepsItsBytes() throws {
        guard case .run(let options) = try SupervisorOptions.parse(["-v", "--", "printf", "a\u{FFFD}b"],
                                                                   rawArguments: [Array("-v".utf8), Array("--".utf8), Array("printf".utf8), [0x61, 0xE9, 0x62]],
                                                                   environment: { _ in nil }) else { return XCTFail() }
        XCTAssertEqual(options.commandBytes, [Array("printf".utf8), [0x61, 0xE9, 0x62]])
    }

    func testHealthActionFlagsAndServiceListsRefuseBadInput() throws {
        func failure(_ arguments: [String], _ environment: [String: String] = [:]) -> String? {
            do {
                _ = try SupervisorOptions.parse(arguments + ["--", "server"], environment: { environment[$0] })
                return nil
            } catch {
                guard case .usage(let message) = error else { return "?" }
                return message
            }
        }
        XCTAssertEqual(failure(["-exit-unhealthy-after", "0s"]), "-exit-unhealthy-after must be greater than zero (specified: 0s)")
        XCTAssertEqual(failure(["-exit-unresponsive-after", "-1s"]), "-exit-unresponsive-after must be greater than zero (specified: -1s)")
        XCTAssertEqual(failure([], ["GRPC_INIT_EXIT_UNHEALTHY_AFTER": "0"]), "GRPC_INIT_EXIT_UNHEALTHY_AFTER must be greater than zero (specified: 0s)")
        XCTAssertEqual(failure(["-health-timeout", "0s"]), "-health-timeout must be greater than zero (specified: 0s)")
        XCTAssertEqual(failure(["-ready=false", "-exit-unhealthy-after", "5s"]), "-exit-unhealthy-after has no effect with -ready=false")
        XCTAssertEqual(failure(["-ready=false", "-exit-unresponsive-after", "5s"]), "-exit-unresponsive-after has no effect with -ready=false")
        XCTAssertEqual(failure([], ["GRPC_INIT_READY_SERVICE": "db,,api"]),
                       "invalid value \"\" for GRPC_INIT_READY_SERVICE: a service name must not be empty")
        XCTAssertNotNil(failure(["-ready-service", ""]))
        guard case .run(let options) = try SupervisorOptions.parse(["-ready-service", "db", "-exit-unresponsive-after", "30s", "--", "s"],
                                                                    environment: { ["GRPC_INIT_READY_SERVICE": "api, web"][$0] }) else {
            return XCTFail()
        }
        XCTAssertEqual(options.readiness?.services, ["api", "web", "db"])
        XCTAssertEqual(options.readiness?.exitUnresponsiveAfter, GoDuration(nanoseconds: 30_000_000_000))
        XCTAssertNil(options.readiness?.exitUnhealthyAfter)
        guard case .run(let plain) = try SupervisorOptions.parse(["s"], environment: { _ in nil }) else { return XCTFail() }
        XCTAssertEqual(plain.readiness?.services, [""])
        XCTAssertEqual(plain.readiness?.healthTimeout, GoDuration.second)
    }

    func testValuesTheGateCannotCarryAreRefused() {
        let long = String(repeating: "s", count: 5_000)
        XCTAssertEqual(failure(["-ready-service", long, "server"]), "-ready-service: a value of 5000 bytes; at most 4096")
        XCTAssertEqual(failure(["server"], ["GRPC_INIT_READY_SERVICE": long]), "GRPC_INIT_READY_SERVICE: a value of 5000 bytes; at most 4096")
        XCTAssertEqual(failure(["-ready-rpc-header", "x: " + long, "server"]), "-ready-rpc-header: a value of 5003 bytes; at most 4096")
        XCTAssertEqual(failure(["-ready-tls", "-ready-tls-ca-cert", "/" + long, "server"]), "-ready-tls-ca-cert: a value of 5001 bytes; at most 4096")
        XCTAssertEqual(failure(Array((0..<33).flatMap { ["-ready-service", "s\($0)"] }) + ["server"]), "-ready-service: at most 32 values")
        let many = (0..<5).flatMap { ["-ready-service", String(repeating: "\($0)", count: 4_000)] }
        XCTAssertEqual(failure(many + ["server"]), "the -ready flags' values add up to more than the health agent is given (16384 bytes)")
        XCTAssertNil(failure(["-ready-service", String(repeating: "s", count: 4_096), "server"]))
    }

    func testTheStopSignalByNameOrNumberFromTheFlagOrTheVariable() throws {
        XCTAssertEqual(try parse(["server"]).stopSignal, SIGTERM)
        for spelling in ["SIGQUIT", "QUIT", "quit", "3"] {
            XCTAssertEqual(try parse(["-stop-signal", spelling, "server"]).stopSignal, SIGQUIT, spelling)
        }
        XCTAssertEqual(try parse(["--stop-signal=RTMIN+2", "server"]).stopSignal, Signals.realTimeMin + 2)
        XCTAssertEqual(try parse(["server"], ["GRPC_INIT_STOP_SIGNAL": "SIGUSR1"]).stopSignal, SIGUSR1)
        XCTAssertEqual(try parse(["-stop-signal", "INT", "server"], ["GRPC_INIT_STOP_SIGNAL": "SIGUSR1"]).stopSignal, SIGINT)
        XCTAssertEqual(try parse(["server"], ["GRPC_INIT_STOP_SIGNAL": ""]), try parse(["server"]), "empty is unset")
    }

    func testAStopSignalGrpcInitCannotCatchIsRefused() {
        XCTAssertEqual(failure(["-stop-signal", "SIGFOO", "server"]), "invalid signal \"SIGFOO\" for -stop-signal")
        XCTAssertEqual(failure(["-stop-signal", "0", "server"]), "invalid signal \"0\" for -stop-signal")
        XCTAssertEqual(failure(["server"], ["GRPC_INIT_STOP_SIGNAL": "99"]), "invalid signal \"99\" for GRPC_INIT_STOP_SIGNAL")
        XCTAssertEqual(failure(["-stop-signal", "KILL", "server"]), "-stop-signal SIGKILL cannot be caught")
        XCTAssertEqual(failure(["server"], ["GRPC_INIT_STOP_SIGNAL": "19"]), "GRPC_INIT_STOP_SIGNAL SIGSTOP cannot be caught")
        XCTAssertEqual(failure(["-stop-signal", "CHLD", "server"]), "-stop-signal SIGCHLD is grpc-init's own (it reaps on it)")
        XCTAssertEqual(failure(["-stop-signal", "32", "server"]), "-stop-signal signal 32 is the C library's own (ignored, never forwarded)")
    }

    func testRewritesAsDumbInitSpellsThemAndByName() throws {
        let options = try parse(["-rewrite-signal", "15:3", "--rewrite-signal=USR1:0", "-rewrite-signal", "SIGHUP:RTMIN+1", "server"])
        XCTAssertEqual(options.rewriteSignals, [SIGTERM: SIGQUIT, SIGUSR1: 0, SIGHUP: Signals.realTimeMin + 1])
        XCTAssertEqual(try parse(["server"], ["GRPC_INIT_REWRITE_SIGNAL": "15:3,10:0"]).rewriteSignals, [SIGTERM: SIGQUIT, SIGUSR1: 0])
        XCTAssertEqual(try parse(["-rewrite-signal", "2:15", "server"], ["GRPC_INIT_REWRITE_SIGNAL": "15:3"]).rewriteSignals,
                       [SIGTERM: SIGQUIT, SIGINT: SIGTERM], "the variable's and the flag's together")
        XCTAssertEqual(try parse(["server"]).rewriteSignals, [:])
        // The stop signal rewritten: what the child gets at the end of the drain.
        let quit = try parse(["-stop-signal", "QUIT", "-rewrite-signal", "QUIT:TERM", "server"])
        XCTAssertEqual(quit.stopSignal, SIGQUIT)
        XCTAssertEqual(quit.rewriteSignals, [SIGQUIT: SIGTERM])
    }

    func testBadRewritesAreRefusedInOneLine() {
        XCTAssertEqual(failure(["-rewrite-signal", "15", "server"]),
                       "invalid value \"15\" for flag -rewrite-signal: want FROM:TO, signals by name or number (15:3, TERM:QUIT, 10:0)")
        XCTAssertEqual(failure(["-rewrite-signal", "15:3:1", "server"]),
                       "invalid value \"15:3:1\" for flag -rewrite-signal: want FROM:TO, signals by name or number (15:3, TERM:QUIT, 10:0)")
        XCTAssertEqual(failure(["-rewrite-signal", "TERM:NOPE", "server"]), "invalid value \"TERM:NOPE\" for flag -rewrite-signal: unknown signal \"NOPE\"")
        XCTAssertEqual(failure(["-rewrite-signal", ":3", "server"]), "invalid value \":3\" for flag -rewrite-signal: unknown signal \"\"")
        XCTAssertEqual(failure(["-rewrite-signal", "9:15", "server"]), "invalid value \"9:15\" for flag -rewrite-signal: SIGKILL cannot be caught")
        XCTAssertEqual(failure(["-rewrite-signal", "STOP:TERM", "server"]), "invalid value \"STOP:TERM\" for flag -rewrite-signal: SIGSTOP cannot be caught")
        XCTAssertEqual(failure(["-rewrite-signal", "15:9", "server"]),
                       "invalid value \"15:9\" for flag -rewrite-signal: SIGKILL is not forwarded: rewrite to a signal the child can catch")
        XCTAssertEqual(failure(["-rewrite-signal", "15:STOP", "server"]),
                       "invalid value \"15:STOP\" for flag -rewrite-signal: SIGSTOP is not forwarded: rewrite to a signal the child can catch")
        XCTAssertEqual(failure(["-rewrite-signal", "CHLD:TERM", "server"]),
                       "invalid value \"CHLD:TERM\" for flag -rewrite-signal: SIGCHLD is grpc-init's own (it reaps on it)")
        XCTAssertEqual(failure(["server"], ["GRPC_INIT_REWRITE_SIGNAL": "15:3,9:0"]),
                       "invalid value \"9:0\" for GRPC_INIT_REWRITE_SIGNAL: SIGKILL cannot be caught")
        XCTAssertEqual(failure(["-rewrite-signal", "15:3", "-rewrite-signal", "TERM:2", "server"]),
                       "-rewrite-signal: SIGTERM rewritten twice (to SIGQUIT and to SIGINT)")
        XCTAssertEqual(failure(["server"], ["GRPC_INIT_REWRITE_SIGNAL": "10:0 USR1:12"]),
                       "GRPC_INIT_REWRITE_SIGNAL: SIGUSR1 rewritten twice (to 0 and to SIGUSR2)")
        XCTAssertEqual(failure(["-rewrite-signal", "15:0", "server"]),
                       "-rewrite-signal drops the stop signal SIGTERM: the child would never be asked to stop")
        XCTAssertEqual(failure(["-stop-signal", "QUIT", "-rewrite-signal", "3:0", "server"]),
                       "-rewrite-signal drops the stop signal SIGQUIT: the child would never be asked to stop")
        // What -stop-signal refuses, a rewrite may not send either.
        XCTAssertEqual(failure(["-rewrite-signal", "15:32", "server"]), "invalid value \"15:32\" for flag -rewrite-signal: signal 32 is the C library's own: "
                       + "the child would not take it as a stop (rewrite to a signal from 1 to 31, or RTMIN and above)")
        XCTAssertNil(failure(["-stop-signal", "QUIT", "-rewrite-signal", "15:0", "server"]), "SIGTERM is not the stop signal: it may be dropped")
    }

    /// A service named twice is refused at once: the agent keys its model by name.
    func testAServiceGivenTwiceIsRefused() {
        XCTAssertEqual(failure(["-ready-service", "db", "-ready-service", "db", "server"]), "-ready-service \"db\" is given twice")
        XCTAssertEqual(failure(["server"], ["GRPC_INIT_READY_SERVICE": "db,api,db"]), "GRPC_INIT_READY_SERVICE \"db\" is given twice")
    }
}
