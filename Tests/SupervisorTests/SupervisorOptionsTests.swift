import Flags
import XCTest
@testable import Supervisor

final class SupervisorOptionsTests: XCTestCase {
    func parse(_ arguments: [String], _ variables: [String: String] = [:]) throws -> SupervisorOptions {
        guard case .run(let options) = try SupervisorOptions.parse(arguments, environment: { variables[$0] }) else {
            throw XCTSkip("not a run")
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

    func testEmptyVariablesCountAsUnset() throws {
        let names = ["VERBOSE", "GRACE", "REMAP_EXIT", "PARENT_DEATH_SIGNAL", "READY_ADDR", "READY_FILE", "READY_INTERVAL"]
        let options = try parse(["true"], Dictionary(uniqueKeysWithValues: names.map { ("GRPC_INIT_" + $0, "") }))
        XCTAssertEqual(options, try parse(["true"]))
    }

    func testMessagesNameWhereTheValueCameFrom() {
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_GRACE": "-1s"]), "GRPC_INIT_GRACE must not be negative (specified: -1s)")
        XCTAssertEqual(failure(["-grace=-1s", "true"]), "-grace must not be negative (specified: -1s)")
        XCTAssertEqual(failure(["-grace=-2s", "true"], ["GRPC_INIT_GRACE": "-1s"]), "-grace must not be negative (specified: -2s)")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_READY_FILE": "/r"]), "GRPC_INIT_READY_FILE needs -ready-addr")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_GRACE": "soon"]), "invalid value \"soon\" for GRPC_INIT_GRACE: parse error")
        XCTAssertEqual(failure(["true"], ["GRPC_INIT_PARENT_DEATH_SIGNAL": "NOPE"]), "invalid signal \"NOPE\" for GRPC_INIT_PARENT_DEATH_SIGNAL")
    }

    func testEveryVariableSetsItsFlag() throws {
        let options = try parse(["server"], [
            "GRPC_INIT_SUBREAPER": "true", "GRPC_INIT_PROCESS_GROUP": "1", "GRPC_INIT_REMAP_EXIT": "143",
            "GRPC_INIT_PARENT_DEATH_SIGNAL": "SIGKILL", "GRPC_INIT_VERBOSE": "t", "GRPC_INIT_WARN_REAPED": "TRUE",
            "GRPC_INIT_GRACE": "1m30s", "GRPC_INIT_READY_ADDR": "unix:///run/s.sock", "GRPC_INIT_READY_SERVICE": "svc",
            "GRPC_INIT_READY_INTERVAL": "20ms", "GRPC_INIT_READY_FILE": "/run/ready",
        ])
        XCTAssertTrue(options.processGroup)
        XCTAssertEqual(options.remapExit, [143])
        XCTAssertEqual(options.parentDeathSignal, 9)
        XCTAssertTrue(options.verbose)
        XCTAssertTrue(options.warnReaped)
        XCTAssertEqual(options.grace.nanoseconds, 90_000_000_000)
        XCTAssertEqual(options.readiness, ReadinessOptions(addr: "unix:///run/s.sock", service: "svc",
                                                           interval: GoDuration(nanoseconds: 20_000_000), file: "/run/ready"))
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
}
