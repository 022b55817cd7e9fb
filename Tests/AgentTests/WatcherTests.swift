@testable import Agent
import Flags
import GateProtocol
import SystemCalls
import Wire
import XCTest

/// The watcher's state changes, against a health server in the test's own reactor: each status
/// into the model as it arrives, a server without Watch checked at its interval, a GOAWAY moved
/// away from at once, a lost connection ended with why.
final class WatcherTests: XCTestCase {
    var sent: [AgentMessage] = []
    var server: InProcessHealthServer!
    var reactor: Reactor!

    override func setUpWithError() throws {
        server = try XCTUnwrap(InProcessHealthServer(), "an abstract unix socket to listen on")
        reactor = Reactor()
        reactor.add(server)
    }

    func watcher(services: [String] = [""], interval: Int64 = 50_000_000) -> (Watcher, HealthModel) {
        var configuration = GateConfiguration()
        configuration.services = services
        configuration.interval = GoDuration(nanoseconds: interval)
        let reporter = Reporter { [unowned self] in self.sent.append($0) }
        let model = HealthModel(services: services, answerInterval: 0, reporter: reporter)
        let found = Found(target: server.target, security: .plaintext, reach: .plaintext, name: "in-process", discovered: false)
        let watcher = Watcher(found, plan: AgentPlan(configuration), model: model, reporter: reporter)
        reactor.add(watcher)
        return (watcher, model)
    }

    /// Turns until `done`, within two seconds.
    func turn(until done: () -> Bool, _ what: String) {
        let outcome = reactor.run(until: { server.flush(); return done() }, deadline: MonotonicClock.deadline(after: 2_000_000_000))
        XCTAssertEqual(outcome, .done, "waiting for \(what)")
    }

    func testEachStatusOfTheWatchReachesTheModel() {
        let (_, model) = watcher()
        turn(until: { model.state.isServing }, "SERVING")
        XCTAssertEqual(model.state, .serving(server: "in-process"))
        server.set("", .notServing)
        turn(until: { model.state == .notServing(.status(.notServing)) }, "NOT_SERVING")
        server.set("", .serving)
        turn(until: { model.state.isServing }, "SERVING again")
        XCTAssertEqual(sent, [.health(.serving(server: "in-process")), .health(.notServing(.status(.notServing))),
                              .health(.serving(server: "in-process"))])
        XCTAssertEqual(server.checks, 0, "a server with Watch is not polled")
    }

    func testAServerWithoutWatchIsCheckedAtItsInterval() {
        server.servesWatch = false
        let (_, model) = watcher(interval: 20_000_000)
        turn(until: { model.state.isServing }, "SERVING by Check")
        XCTAssertEqual(sent.first, .noWatch(server: "in-process", interval: 20_000_000))
        server.set("", .notServing)
        turn(until: { model.state == .notServing(.status(.notServing)) }, "NOT_SERVING by the next Check")
        XCTAssertGreaterThanOrEqual(server.checks, 2)
    }

    func testAServiceTheServerDoesNotKnowEndsTheWatchWithItsStatus() {
        let (watcher, model) = watcher(services: ["db"])
        turn(until: { watcher.end != nil }, "the Watch's end")
        XCTAssertEqual(watcher.end, .lost)
        guard case .notServing(.rpc(let status)) = model.state else { return XCTFail("\(model.state)") }
        XCTAssertEqual(status.code, .notFound)
        XCTAssertTrue(status.fromServer, "the server's own status, not one the client concluded")
    }

    func testAGoAwayMovesTheWatchAwayAtOnce() {
        let (watcher, model) = watcher()
        turn(until: { model.state.isServing }, "SERVING")
        server.goAway()
        turn(until: { watcher.end != nil }, "the move")
        XCTAssertEqual(watcher.end, .goAway)
        XCTAssertEqual(sent.last, .goAway(server: "in-process"))
        XCTAssertTrue(model.state.isServing, "a GOAWAY is not a change of health")
    }

    func testALostConnectionEndsTheWatchWithWhy() {
        let (watcher, model) = watcher()
        turn(until: { model.state.isServing }, "SERVING")
        server.dropConnections()
        turn(until: { watcher.end != nil }, "the loss")
        XCTAssertEqual(watcher.end, .lost)
        guard case .notServing(.rpc(let status)) = model.state else { return XCTFail("\(model.state)") }
        XCTAssertFalse(status.fromServer, "the client concluded it: the server said nothing")
        XCTAssertEqual(status.code, .unavailable)
    }

    func testWithSeveralServicesEachIsWatchedAndTheFirstNotServingIsWhy() {
        server.statuses = ["db": .serving, "api": .notServing]
        let (_, model) = watcher(services: ["db", "api"])
        turn(until: { model.state == .notServing(.service("api", .status(.notServing))) }, "api NOT_SERVING")
        server.set("api", .serving)
        turn(until: { model.state.isServing }, "both SERVING")
        XCTAssertEqual(server.watchesStarted, 2)
    }
}
