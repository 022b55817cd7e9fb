@testable import Agent
import Flags
import GateProtocol
import HealthServer
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
        guard case .notServing(.watchEnded(let status)) = model.state else { return XCTFail("\(model.state)") }
        XCTAssertEqual(status.code, .notFound)
        XCTAssertTrue(status.fromServer, "the server's own status, not one the client concluded")
    }

    /// A Watch the server ends, even with OK, is no answer to "is it serving": every edge says
    /// UNAVAILABLE, never the server's OK as if it were a Check's.
    func testAWatchEndedWithOKIsNotAnAnswer() {
        let (watcher, model) = watcher()
        turn(until: { model.state.isServing }, "SERVING")
        server.endWatches(GRPCStatus(.ok))
        turn(until: { watcher.end != nil }, "the Watch's end")
        guard case .notServing(let why) = model.state, case .watchEnded(let status) = why else { return XCTFail("\(model.state)") }
        XCTAssertEqual(status.code, .ok)
        let verdict = Verdict(why)
        guard case .rpcFailed(let failed) = verdict else { return XCTFail("\(verdict)") }
        XCTAssertEqual(failed.code, .unavailable)
        XCTAssertFalse(failed.fromServer)
        XCTAssertEqual(HealthServer.grpc(verdict).status.code, .unavailable)
        XCTAssertNil(HealthServer.grpc(verdict).response)
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

    func testAServerWithoutAHealthServiceIsReadyBecauseItAnswersGRPCAndNotCheckedAgain() {
        server.servesHealth = false
        let (watcher, model) = watcher(interval: 20_000_000)
        turn(until: { model.state.isServing }, "SERVING because the server answers gRPC")
        XCTAssertEqual(sent, [.noHealthService(server: "in-process"), .health(.serving(server: "in-process"))])
        XCTAssertTrue(model.withoutHealth)
        XCTAssertTrue(model.snapshot(connected: true).withoutHealth)
        XCTAssertEqual(server.checks, 1)
        XCTAssertNil(watcher.wakeAt, "no periodic Checks: nothing to wake for")
        // Several intervals later: still one Check.
        let later = MonotonicClock.deadline(after: 100_000_000)
        _ = reactor.run(until: { server.flush(); return false }, deadline: later)
        XCTAssertEqual(server.checks, 1)
        XCTAssertNil(watcher.end)
    }

    func testWithoutAHealthServiceTheClosedConnectionIsNews() {
        server.servesHealth = false
        let (watcher, model) = watcher()
        turn(until: { model.state.isServing }, "SERVING because the server answers gRPC")
        server.dropConnections()
        turn(until: { watcher.end != nil }, "the loss")
        XCTAssertEqual(watcher.end, .lost)
        guard case .notServing(.rpc(let status)) = model.state else { return XCTFail("\(model.state)") }
        XCTAssertEqual(status.code, .unavailable)
    }

    func testANamedServiceOfAServerWithoutAHealthServiceIsNotReady() {
        server.servesHealth = false
        let (_, model) = watcher(services: ["db"], interval: 20_000_000)
        turn(until: { if case .notServing(.rpc) = model.state { return true } else { return false } }, "the Check's UNIMPLEMENTED")
        guard case .notServing(.rpc(let status)) = model.state else { return XCTFail("\(model.state)") }
        XCTAssertTrue(status.isServerUnimplemented)
        XCTAssertEqual(sent.first, .noWatch(server: "in-process", interval: 20_000_000))
        XCTAssertFalse(sent.contains(.noHealthService(server: "in-process")))
    }

    // MARK: -ready-service '*'

    func testEveryListedServiceIsWatchedAndReadyOnlyWhenEachIsServing() {
        server.statuses = ["a": .notServing, "b": .notServing, "c": .serving]
        let (_, model) = watcher(services: ["*"])
        turn(until: { model.services == ["a", "b", "c"] && model.state == .notServing(.service("a", .status(.notServing))) }, "the list")
        XCTAssertEqual(server.watchesStarted, 3, "one Watch each")
        server.set("a", .serving)
        turn(until: { model.state == .notServing(.service("b", .status(.notServing))) }, "b holding readiness back")
        server.set("b", .serving)
        turn(until: { model.state.isServing }, "every listed service SERVING")
        XCTAssertEqual(server.lists, 1)
        XCTAssertTrue(sent.contains(.service(name: "a", state: .serving(server: "in-process"))), "each change said")
    }

    func testAServiceThatLeavesTheListStopsCounting() {
        server.statuses = ["a": .serving, "b": .notServing]
        let (_, model) = watcher(services: ["*"])
        turn(until: { model.state == .notServing(.service("b", .status(.notServing))) }, "b NOT_SERVING")
        server.remove("b")
        turn(until: { model.state.isServing }, "b gone from the list")
        XCTAssertEqual(model.services, ["a"])
        XCTAssertEqual(server.lists, 2, "listed again when a service turned SERVICE_UNKNOWN")
        XCTAssertTrue(sent.contains(.service(name: "b", state: .notServing(.status(.serviceUnknown)))))
    }

    func testWithoutListEveryListedServiceIsNotReadyAndNotAskedAgain() {
        server.servesList = false
        let (watcher, model) = watcher(services: ["*"])
        turn(until: { model.state == .notServing(Watcher.listUnimplemented) }, "no List")
        XCTAssertNil(watcher.end, "nothing to retry")
        XCTAssertEqual(model.listUnimplementedBy, ["in-process"])
        let again = Watcher(watcher.server, plan: AgentPlan({ var c = GateConfiguration(); c.services = ["*"]; return c }()), model: model,
                            reporter: Reporter { _ in })
        XCTAssertEqual(again.channel.dials, 0, "remembered: not asked again, nothing else to ask")
        XCTAssertEqual(model.state, .notServing(Watcher.listUnimplemented))
        XCTAssertEqual(Watcher.listUnimplemented.description,
                       "service \"*\": rpc error: code = Unimplemented desc = the server has no Health/List to list its services")
    }

    func testTooManyServicesIsAClearReasonAndRetried() {
        server.listFailure = GRPCStatus(.resourceExhausted, "server health list exceeds maximum capacity: 100")
        let (watcher, model) = watcher(services: ["*"])
        turn(until: { watcher.end != nil }, "the List's failure")
        XCTAssertEqual(watcher.end, .lost, "retried as a Watch is")
        guard case .notServing(let why) = model.state else { return XCTFail("\(model.state)") }
        XCTAssertEqual(why.description, "service \"*\": rpc error: code = ResourceExhausted desc = server health list exceeds maximum capacity: 100")
        XCTAssertTrue(Verdict(why) == .rpcFailed(GRPCStatus(.resourceExhausted, "server health list exceeds maximum capacity: 100")))
    }
}

/// Two servers of one tree watched into one model, each by a watcher of its own.
final class TwoServersWatcherTests: XCTestCase {
    func testReadyOnlyWhenBothServersAre() throws {
        let first = try XCTUnwrap(InProcessHealthServer(), "an abstract unix socket to listen on")
        let second = try XCTUnwrap(InProcessHealthServer(), "an abstract unix socket to listen on")
        second.set("", .notServing)
        let reactor = Reactor()
        reactor.add(first)
        reactor.add(second)
        let model = HealthModel(services: [""], answerInterval: 0, reporter: Reporter { _ in })
        let plan = AgentPlan(GateConfiguration())
        for (server, name) in [(first, "a"), (second, "b")] {
            model.add(server: name)
            reactor.add(Watcher(Found(target: server.target, security: .plaintext, reach: .plaintext, name: name, discovered: true),
                                plan: plan, model: model, reporter: Reporter { _ in }))
        }
        func turn(until done: () -> Bool, _ what: String) {
            let outcome = reactor.run(until: { first.flush(); second.flush(); return done() },
                                      deadline: MonotonicClock.deadline(after: 2_000_000_000))
            XCTAssertEqual(outcome, .done, "waiting for \(what)")
        }
        turn(until: { model.state == .notServing(.server("b", .status(.notServing))) }, "b NOT_SERVING holds the tree back")
        second.set("", .serving)
        turn(until: { model.state.isServing }, "both SERVING")
        XCTAssertEqual(model.state, .serving(server: "a, b"))
        first.set("", .notServing)
        turn(until: { model.state == .notServing(.server("a", .status(.notServing))) }, "a NOT_SERVING")
    }
}
