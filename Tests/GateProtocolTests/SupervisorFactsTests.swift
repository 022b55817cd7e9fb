import GateProtocol
import XCTest

/// The supervisor's facts for the agent's metrics: a message of their own, after the
/// configuration, read by a newer or older peer without harm.
final class SupervisorFactsTests: XCTestCase {
    static func sample() -> SupervisorFacts {
        var facts = SupervisorFacts()
        facts.supervisorStarted = 1_796_000_000_123_456_789
        facts.childStarted = 1_796_000_000_223_456_789
        facts.childPid = Int32.max
        facts.firstServingAfter = 72_000_000
        facts.restarted(.crashed)
        facts.restarted(.crashed)
        facts.restarted(.protocolError)
        return facts
    }

    func decodeAll(_ bytes: [UInt8]) throws -> [SupervisorMessage] {
        var decoder = GateFraming.Decoder()
        decoder.append(bytes)
        var messages: [SupervisorMessage] = []
        while let frame = try decoder.nextFrame() {
            if let message = try SupervisorMessage.decode(kind: frame.kind, payload: frame.payload) { messages.append(message) }
        }
        return messages
    }

    func testFactsRoundTripAfterTheConfiguration() throws {
        var none = SupervisorFacts()
        XCTAssertEqual(try decodeAll(SupervisorMessage.facts(none).frame), [.facts(none)])
        none.firstServingAfter = 0
        XCTAssertEqual(try decodeAll(SupervisorMessage.facts(none).frame), [.facts(none)], "a first SERVING at once is not none")
        let facts = SupervisorFactsTests.sample()
        XCTAssertEqual(facts.restarts(.crashed), 2)
        XCTAssertEqual(facts.restarts(.protocolError), 1)
        XCTAssertEqual(facts.restarts(.exited), 0)
        let stream = SupervisorMessage.configure(GateConfiguration()).frame + SupervisorMessage.facts(facts).frame + SupervisorMessage.drain.frame
        XCTAssertEqual(try decodeAll(stream), [.configure(GateConfiguration()), .facts(facts), .drain])
    }

    func testCountsAtTheirLargestStayThere() throws {
        var facts = SupervisorFacts()
        facts.agentRestarts = Array(repeating: UInt64.max, count: AgentRestartCause.allCases.count)
        facts.restarted(.startFailed)
        XCTAssertEqual(facts.restarts(.startFailed), UInt64.max)
        XCTAssertEqual(try decodeAll(SupervisorMessage.facts(facts).frame), [.facts(facts)])
    }

    /// Payload bytes as the framing writes them.
    static func payload(pid: Int64, first: Int64, restarts: [UInt64]) -> [UInt8] {
        func integer(_ value: Int64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: value) >> UInt64(56 - 8 * $0)) } }
        return integer(1) + integer(2) + integer(pid) + integer(first) + [UInt8(restarts.count)] + restarts.flatMap { integer(Int64(bitPattern: $0)) }
    }

    func factsKind() throws -> UInt8 {
        try XCTUnwrap(SupervisorMessage.facts(SupervisorFacts()).frame.dropFirst().first)
    }

    func testANewerSupervisorsCausesAreSkippedAnOlderOnesFilledWithZero() throws {
        let kind = try factsKind()
        let newer = try XCTUnwrap(try SupervisorMessage.decode(kind: kind, payload: SupervisorFactsTests.payload(pid: 7, first: -1, restarts: [1, 2, 3, 4, 5, 6, 7])))
        guard case .facts(let facts) = newer else { return XCTFail("\(newer)") }
        XCTAssertEqual(facts.agentRestarts, [1, 2, 3, 4, 5])
        XCTAssertEqual(facts.childPid, 7)
        XCTAssertNil(facts.firstServingAfter)
        let older = try XCTUnwrap(try SupervisorMessage.decode(kind: kind, payload: SupervisorFactsTests.payload(pid: 7, first: 5, restarts: [9])))
        guard case .facts(let fewer) = older else { return XCTFail("\(older)") }
        XCTAssertEqual(fewer.agentRestarts, [9, 0, 0, 0, 0])
        XCTAssertEqual(fewer.firstServingAfter, 5)
    }

    func testBrokenFactsAreRefused() throws {
        let kind = try factsKind()
        for payload in [SupervisorFactsTests.payload(pid: -1, first: -1, restarts: []),
                        SupervisorFactsTests.payload(pid: Int64(Int32.max) + 1, first: -1, restarts: []),
                        SupervisorFactsTests.payload(pid: 1, first: -2, restarts: []),
                        SupervisorFactsTests.payload(pid: 1, first: -1, restarts: Array(repeating: 0, count: GateFraming.maxList + 1)),
                        Array(SupervisorFactsTests.payload(pid: 1, first: -1, restarts: [1]).dropLast()),
                        SupervisorFactsTests.payload(pid: 1, first: -1, restarts: []) + [0]] {
            XCTAssertThrowsError(try SupervisorMessage.decode(kind: kind, payload: payload), "\(payload)")
        }
    }
}
