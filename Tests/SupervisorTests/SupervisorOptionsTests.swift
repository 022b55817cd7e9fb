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

    func testTheCommandKeepsItsBytes() throws {
        guard case .run(let options) = try SupervisorOptions.parse(["-v", "--", "printf", "a\u{FFFD}b"],
                                                                   rawArguments: [Array("-v".utf8), Array("--".utf8), Array("printf".utf8), [0x61, 0xE9, 0x62]],
                                                                   environment: { _ in nil }) else { return XCTFail() }
        XCTAssertEqual(options.commandBytes, [Array("printf".utf8), [0x61, 0xE9, 0x62]])
    }
}
