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
        XCTAssertEqual(health.state, .notServing(.service("db", .starting)))
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
        health.update(service: "", serving)
        sent = []
        health.awaitAnswers()
        XCTAssertEqual(sent, [])
        XCTAssertEqual(health.snapshot(connected: true).overall, .notServing(.awaitingAnswer))
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
        health.answeredWithHealth()
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
}
