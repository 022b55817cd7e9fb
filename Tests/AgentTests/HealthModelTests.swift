@testable import Agent
import GateProtocol
import HealthServer
import XCTest

/// The agent's one account of the server's health: what it reports to the supervisor, once per
/// change, and what the health server reads from it.
final class HealthModelTests: XCTestCase {
    var sent: [AgentMessage] = []

    func model(_ services: [String], answerInterval: Int64 = 0) -> HealthModel {
        HealthModel(services: services, answerInterval: answerInterval, reporter: Reporter { [unowned self] in self.sent.append($0) })
    }

    let serving = HealthState.serving(server: "127.0.0.1:1")

    func testEachChangeIsReportedOnce() {
        let health = model([""])
        health.update(service: "", serving)
        health.update(service: "", serving)
        health.update(service: "", .notServing(.status(.notServing)))
        health.update(service: "", .notServing(.status(.notServing)))
        XCTAssertEqual(sent, [.health(serving), .health(.notServing(.status(.notServing)))])
    }

    func testAServiceItDoesNotWatchChangesNothing() {
        let health = model(["db"])
        health.update(service: "other", serving)
        XCTAssertEqual(sent, [])
        XCTAssertEqual(health.state, .notServing(.starting))
    }

    func testWithSeveralServicesTheFirstNotServingIsWhy() {
        let health = model(["db", "api"])
        health.update(service: "api", serving)
        XCTAssertEqual(health.state, .notServing(.service("db", .awaitingAnswer)))
        health.update(service: "db", serving)
        XCTAssertEqual(health.state, serving)
        health.update(service: "api", .notServing(.rpc(GRPCStatus(.unavailable, "gone"))))
        XCTAssertEqual(health.state, .notServing(.service("api", .rpc(GRPCStatus(.unavailable, "gone")))))
        XCTAssertEqual(sent.filter { if case .service = $0 { return true } else { return false } }.count, 3)
        XCTAssertEqual(sent.last, .health(.notServing(.service("api", .rpc(GRPCStatus(.unavailable, "gone"))))))
    }

    /// A restarted agent awaits the server's first answer without telling the supervisor: a
    /// ready child does not flap.
    func testAwaitingAnswersSaysNothing() {
        let health = model([""])
        health.add(server: "127.0.0.1:1")
        XCTAssertEqual(sent, [])
        XCTAssertEqual(health.snapshot(connected: true).overall, .notServing(.awaitingAnswer))
        // Moved to a new connection while SERVING: still SERVING until it says otherwise.
        health.update(server: "127.0.0.1:1", service: "", serving)
        health.add(server: "127.0.0.1:1")
        XCTAssertEqual(sent, [.health(serving)])
        XCTAssertEqual(health.state, serving)
    }

    func testADrainIsInEverySnapshot() {
        let health = model([""])
        health.update(service: "", serving)
        health.drain()
        let snapshot = health.snapshot(connected: true)
        XCTAssertTrue(snapshot.draining)
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), snapshot), .now(.draining))
        XCTAssertEqual(snapshot.server, "127.0.0.1:1")
    }

    /// Answers are reported only with an answer interval, at most twice an interval.
    func testAnswersAreReportedAtMostTwiceAnInterval() {
        let quiet = model([""])
        quiet.answered(now: 0)
        XCTAssertEqual(sent, [])
        let health = model([""], answerInterval: 1_000)
        for now in stride(from: Int64(0), through: 2_000, by: 100) { health.answered(now: now) }
        XCTAssertEqual(sent.count, 5)
    }

    func testWithoutAHealthServiceTheServerAsAWholeIsServingAndSaysSoOnce() {
        let health = model([""])
        health.answeredWithoutHealth(server: "127.0.0.1:1")
        health.answeredWithoutHealth(server: "127.0.0.1:1")
        XCTAssertEqual(sent, [.noHealthService(server: "127.0.0.1:1"), .health(serving)])
        XCTAssertTrue(health.snapshot(connected: true).withoutHealth)
        health.answeredWithHealth(server: "127.0.0.1:1")
        XCTAssertFalse(health.snapshot(connected: true).withoutHealth)
    }

    func testWithoutAHealthServiceANamedServiceIsNotServing() {
        for services in [["db"], ["*"]] {
            sent = []
            let health = model(services)
            health.answeredWithoutHealth(server: "127.0.0.1:1")
            XCTAssertEqual(sent, [])
            XCTAssertFalse(health.state.isServing)
        }
    }

    func testEveryListedServiceCountsUntilItLeavesTheList() {
        let health = model(["*"])
        XCTAssertTrue(health.listing)
        XCTAssertEqual(health.services, [])
        health.listed(["a", "b"])
        XCTAssertEqual(health.state, .notServing(.service("a", .awaitingAnswer)))
        health.update(service: "a", serving)
        health.update(service: "b", .notServing(.status(.notServing)))
        XCTAssertEqual(health.state, .notServing(.service("b", .status(.notServing))))
        health.listed(["a"])
        XCTAssertEqual(health.state, serving)
        XCTAssertEqual(health.snapshot(connected: true).lines.map(\.service), ["a"])
        XCTAssertEqual(Array(sent.suffix(2)), [.service(name: "b", state: .notServing(.status(.serviceUnknown))), .health(serving)])
        health.listed([])
        XCTAssertEqual(health.state, .notServing(.service("*", .status(.serviceUnknown))), "nothing listed: nothing ready")
    }

    // MARK: Several servers

    let unimplemented = HealthState.notServing(.rpc(GRPCStatus(rawCode: GRPCStatusCode.unimplemented.rawValue, message: "unknown service grpc.health.v1.Health", fromServer: true)))

    /// Two servers of one tree: ready only when both are SERVING, whichever answered first, and
    /// the reason names the first (by name) that holds readiness back.
    func testTwoServersAreReadyOnlyWhenBothAre() {
        for order in [["127.0.0.1:1", "127.0.0.1:2"], ["127.0.0.1:2", "127.0.0.1:1"]] {
            let health = model([""])
            for name in order { health.add(server: name) }
            health.update(server: order[0], service: "", order[0] == "127.0.0.1:1" ? .serving(server: order[0]) : .notServing(.status(.notServing)))
            health.update(server: order[1], service: "", order[1] == "127.0.0.1:1" ? .serving(server: order[1]) : .notServing(.status(.notServing)))
            XCTAssertEqual(health.state, .notServing(.server("127.0.0.1:2", .status(.notServing))), "answered in the order \(order)")
            let snapshot = health.snapshot(connected: true)
            XCTAssertEqual(snapshot.lines.map(\.description), ["[+]127.0.0.1:1 SERVING", "[-]127.0.0.1:2 NOT_SERVING"])
            XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), snapshot), .now(.notServing(.notServing)))
            health.update(server: "127.0.0.1:2", service: "", .serving(server: "127.0.0.1:2"))
            XCTAssertEqual(health.state, .serving(server: "127.0.0.1:1, 127.0.0.1:2"))
            XCTAssertEqual(health.server, "127.0.0.1:1, 127.0.0.1:2")
        }
    }

    /// A server found while the others are SERVING holds readiness back until its first answer,
    /// and the supervisor is told once it answers.
    func testAServerFoundLaterCountsFromItsFirstAnswer() {
        let health = model([""])
        health.add(server: "127.0.0.1:1")
        health.update(server: "127.0.0.1:1", service: "", .serving(server: "127.0.0.1:1"))
        health.add(server: "127.0.0.1:2")
        XCTAssertFalse(health.state.isServing)
        health.update(server: "127.0.0.1:2", service: "", .notServing(.status(.notServing)))
        XCTAssertEqual(sent.last, .health(.notServing(.server("127.0.0.1:2", .status(.notServing)))))
    }

    /// A SERVING held back while discovery settles is not said once the last server is gone,
    /// when discovery then settles.
    func testAHeldServingIsNotSaidWithNoServerLeft() {
        let health = model([""])
        var waiting: Reason? = .server("127.0.0.1:2", .awaitingAnswer)
        health.settle = { waiting }
        health.add(server: "127.0.0.1:1")
        health.update(server: "127.0.0.1:1", service: "", .serving(server: "127.0.0.1:1"))
        XCTAssertEqual(health.state, .notServing(.server("127.0.0.1:2", .awaitingAnswer)))
        health.remove(server: "127.0.0.1:1")
        waiting = nil
        health.reconsider()
        XCTAssertEqual(health.state, .notServing(.noListener))
        XCTAssertFalse(sent.contains { if case .health(.serving) = $0 { return true } else { return false } }, "\(sent)")
    }

    /// A server gone (its listener closed) stops counting: the other's word decides.
    func testAServerGoneStopsCounting() {
        let health = model([""])
        health.add(server: "127.0.0.1:1")
        health.add(server: "127.0.0.1:2")
        health.update(server: "127.0.0.1:1", service: "", .serving(server: "127.0.0.1:1"))
        health.update(server: "127.0.0.1:2", .notServing(.rpc(GRPCStatus(.unavailable, "connection lost"))))
        XCTAssertFalse(health.state.isServing)
        health.remove(server: "127.0.0.1:2")
        XCTAssertEqual(health.state, .serving(server: "127.0.0.1:1"))
        XCTAssertEqual(health.snapshot(connected: true).lines.map(\.description), ["[+](server) SERVING"])
        health.remove(server: "127.0.0.1:1")
        XCTAssertEqual(health.state, .notServing(.noListener))
    }

    /// A server without a health service beside one with it is listed, not waited for; alone,
    /// its answer is the verdict, as with one server.
    func testAServerWithoutHealthIsListedNotWaitedFor() {
        let health = model([""])
        health.add(server: "127.0.0.1:1")
        health.add(server: "127.0.0.1:2")
        health.update(server: "127.0.0.1:1", service: "", unimplemented)
        XCTAssertFalse(health.counts(server: "127.0.0.1:1") && health.state.isServing)
        health.update(server: "127.0.0.1:2", service: "", .serving(server: "127.0.0.1:2"))
        XCTAssertEqual(health.state, .serving(server: "127.0.0.1:2"))
        XCTAssertFalse(health.counts(server: "127.0.0.1:1"))
        XCTAssertEqual(health.snapshot(connected: true).lines.count, 2, "both listed")
        health.remove(server: "127.0.0.1:2")
        XCTAssertTrue(health.counts(server: "127.0.0.1:1"))
        XCTAssertFalse(health.state.isServing)
    }

    /// With several services, each server's: the service's reason names the server.
    func testSeveralServicesOfSeveralServers() {
        let health = model(["db", "api"])
        health.add(server: "127.0.0.1:1")
        health.add(server: "127.0.0.1:2")
        for server in ["127.0.0.1:1", "127.0.0.1:2"] {
            for service in ["db", "api"] { health.update(server: server, service: service, .serving(server: server)) }
        }
        XCTAssertTrue(health.state.isServing)
        health.update(server: "127.0.0.1:2", service: "api", .notServing(.status(.notServing)))
        XCTAssertEqual(health.state, .notServing(.service("api", .server("127.0.0.1:2", .status(.notServing)))))
        XCTAssertEqual(Reason.service("api", .server("127.0.0.1:2", .status(.notServing))).description,
                       "service \"api\": 127.0.0.1:2: NOT_SERVING")
    }

    /// Without a health service, a server is ready because it answers gRPC when it counts: alone
    /// (or beside others without one). Beside a server with a health service it is listed with
    /// its UNIMPLEMENTED, not waited for, and not said to the supervisor.
    func testAServerWithoutHealthCountsOnlyWithoutAServerWithHealth() {
        let health = model([""])
        let status = GRPCStatus(rawCode: GRPCStatusCode.unimplemented.rawValue, message: "unknown service grpc.health.v1.Health", fromServer: true)
        health.add(server: "127.0.0.1:1")
        health.add(server: "127.0.0.1:2")
        health.answeredWithoutHealth(server: "127.0.0.1:2", status)
        XCTAssertFalse(health.counts(server: "127.0.0.1:2"))
        XCTAssertFalse(health.state.isServing, "the server with a health service has not answered")
        health.update(server: "127.0.0.1:1", service: "", .serving(server: "127.0.0.1:1"))
        XCTAssertEqual(health.state, .serving(server: "127.0.0.1:1"))
        XCTAssertEqual(sent, [.health(.serving(server: "127.0.0.1:1"))])
        let snapshot = health.snapshot(connected: true)
        XCTAssertFalse(snapshot.withoutHealth)
        XCTAssertEqual(snapshot.lines.map(\.description),
                       ["[+]127.0.0.1:1 SERVING", "[-]127.0.0.1:2 rpc error: code = Unimplemented desc = unknown service grpc.health.v1.Health"])
        // Alone, it is ready because it answers gRPC, and said so before the SERVING.
        health.remove(server: "127.0.0.1:1")
        XCTAssertEqual(Array(sent.suffix(2)), [.noHealthService(server: "127.0.0.1:2"), .health(.serving(server: "127.0.0.1:2"))])
        XCTAssertTrue(health.snapshot(connected: true).withoutHealth)
    }

    func testEveryServerWithoutHealthIsReady() {
        let health = model([""])
        health.add(server: "127.0.0.1:1")
        health.add(server: "127.0.0.1:2")
        health.answeredWithoutHealth(server: "127.0.0.1:2")
        XCTAssertFalse(health.state.isServing)
        health.answeredWithoutHealth(server: "127.0.0.1:1")
        XCTAssertEqual(health.state, .serving(server: "127.0.0.1:1, 127.0.0.1:2"))
        XCTAssertEqual(sent.filter { if case .noHealthService = $0 { return true } else { return false } }.count, 2)
        XCTAssertTrue(health.snapshot(connected: true).withoutHealth)
    }

    /// `-ready-service '*'` with several servers: each server's listed services, each SERVING;
    /// a server that has not listed yet (or cannot) holds readiness back.
    func testEveryListedServiceOfEveryServer() {
        let health = model(["*"])
        health.add(server: "127.0.0.1:1")
        health.add(server: "127.0.0.1:2")
        health.listed(server: "127.0.0.1:1", ["a"])
        health.update(server: "127.0.0.1:1", service: "a", .serving(server: "127.0.0.1:1"))
        XCTAssertEqual(health.state, .notServing(.server("127.0.0.1:2", .awaitingAnswer)))
        health.update(server: "127.0.0.1:2", .notServing(Watcher.listUnimplemented))
        XCTAssertEqual(health.state, .notServing(.service("*", .server("127.0.0.1:2", Watcher.listUnimplemented.innermost))))
        health.listed(server: "127.0.0.1:2", ["a", "b"])
        XCTAssertEqual(health.services, ["a", "b"])
        XCTAssertEqual(health.services(of: "127.0.0.1:1"), ["a"])
        health.update(server: "127.0.0.1:2", service: "a", .serving(server: "127.0.0.1:2"))
        XCTAssertEqual(health.state, .notServing(.service("b", .server("127.0.0.1:2", .awaitingAnswer))))
        health.update(server: "127.0.0.1:2", service: "b", .serving(server: "127.0.0.1:2"))
        XCTAssertTrue(health.state.isServing)
        health.listed(server: "127.0.0.1:2", ["a"])
        XCTAssertEqual(health.services, ["a"])
        XCTAssertTrue(health.state.isServing)
        XCTAssertTrue(sent.contains(.service(name: "b", state: .notServing(.status(.serviceUnknown)))))
    }

    /// A server's name in a reason crosses the gate and back.
    func testAServerReasonRoundTrips() throws {
        for reason in [Reason.server("127.0.0.1:2", .status(.notServing)), .service("api", .server("127.0.0.1:2", .awaitingAnswer))] {
            let frame = AgentMessage.health(.notServing(reason)).frame
            XCTAssertEqual(try AgentMessage.decode(kind: frame[1], payload: Array(frame[4...])), .health(.notServing(reason)))
        }
        let gone = AgentMessage.gone(server: "127.0.0.1:2").frame
        XCTAssertEqual(try AgentMessage.decode(kind: gone[1], payload: Array(gone[4...])), .gone(server: "127.0.0.1:2"))
    }
}

extension HealthModel {
    /// One service of the one server watched (found at "127.0.0.1:1").
    func update(service: String, _ new: HealthState) { update(server: "127.0.0.1:1", service: service, new) }

    /// The services the one server lists.
    func listed(_ names: [String]) { listed(server: "127.0.0.1:1", names) }
}
