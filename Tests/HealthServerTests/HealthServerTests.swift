import GateProtocol
import HealthServer
import Wire
import XCTest

/// The health server's decisions, without sockets: a snapshot of the model and a question in,
/// one verdict out, rendered for each edge.
final class HealthServerTests: XCTestCase {
    static let server = "127.0.0.1:50051"

    func snapshot(_ states: [String: HealthState], services: [String]? = nil, draining: Bool = false, connected: Bool = true) -> HealthSnapshot {
        let order = services ?? states.keys.sorted()
        var overall = HealthState.serving(server: HealthServerTests.server)
        for service in order {
            if case .notServing(let why) = states[service]! {
                overall = .notServing(order.count > 1 ? .service(service, why) : why)
                break
            }
        }
        return HealthSnapshot(services: order, states: states, overall: overall, draining: draining, server: HealthServerTests.server,
                              connected: connected)
    }

    let serving = HealthState.serving(server: HealthServerTests.server)

    func testWhatIsReadyIsConfirmedByACheck() {
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), snapshot(["": serving])), .check(service: ""))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), snapshot(["db": serving, "api": serving], services: ["db", "api"])),
                       .check(service: "db"))
    }

    func testWhatIsNotReadyIsSaidAtOnceWithWhy() {
        let model = snapshot(["db": serving, "api": .notServing(.status(.notServing))], services: ["db", "api"])
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), model), .now(.notServing(.notServing), service: "api"))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: "api"), model), .now(.notServing(.notServing)))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: "db"), model), .check(service: "db"))
        let lost = snapshot(["": .notServing(.rpc(GRPCStatus(.unavailable, "connection closed")))])
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), lost), .now(.rpcFailed(GRPCStatus(.unavailable, "connection closed"))))
        let refused = snapshot(["": .notServing(.unreachable(Unreachable(.connect, "connection refused")))], connected: false)
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), refused),
                       .now(.unreachable(.unreachable(Unreachable(.connect, "connection refused")))))
    }

    func testAServiceTheModelDoesNotWatchIsAskedDirectly() {
        let model = snapshot(["": .notServing(.status(.notServing))])
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: "other"), model), .check(service: "other"))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: "other"), snapshot(["": serving], connected: false)),
                       .now(.unreachable(.starting)))
    }

    func testADrainIsNotReadyEverywhereAndLivenessStillAsks() {
        let model = snapshot(["": serving], draining: true)
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), model), .now(.draining))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: "x"), model), .now(.draining))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.watch, service: ""), model), .now(.draining))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.live, service: nil), model), .check(service: ""))
        XCTAssertEqual(HealthServer.http(.draining, .ready, verbose: nil).status, 503)
        XCTAssertEqual(HealthServer.http(.draining, .ready, verbose: nil).body, ["draining"])
        XCTAssertEqual(HealthServer.grpc(.draining).response, .notServing)
        XCTAssertEqual(model.lines, [ServiceLine(service: "", verdict: .draining)])
    }

    func testLivenessIsAnyAnswerOfTheHealthService() {
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.live, service: nil), snapshot(["": .notServing(.status(.notServing))])), .check(service: ""))
        let answered: [Verdict] = [.serving, .notServing(.notServing), .notServing(.serviceUnknown),
                                   .rpcFailed(GRPCStatus(rawCode: 5, message: "unknown service", fromServer: true))]
        for verdict in answered { XCTAssertEqual(HealthServer.http(verdict, .live, verbose: nil).status, 200, "\(verdict)") }
        let silent: [Verdict] = [.rpcFailed(GRPCStatus(.deadlineExceeded, "context deadline exceeded")),
                                 .rpcFailed(GRPCStatus(rawCode: 4, message: "deadline", fromServer: true)),
                                 .rpcFailed(GRPCStatus.fromHTTPStatus("404")), .unreachable(.noListener)]
        for verdict in silent { XCTAssertEqual(HealthServer.http(verdict, .live, verbose: nil).status, 503, "\(verdict)") }
    }

    /// A Check's end, as grpc-go's client concludes it, whichever edge asked.
    func testACheckEndsInOneVerdict() {
        func end(_ status: GRPCStatus, _ message: [UInt8]?, _ unreachable: Unreachable? = nil) -> Verdict {
            HealthServer.verdict(status: status, message: message, unreachable: unreachable)
        }
        XCTAssertEqual(end(GRPCStatus(.ok), Health.response(.serving)), .serving)
        XCTAssertEqual(end(GRPCStatus(.ok), Health.response(.notServing)), .notServing(.notServing))
        XCTAssertEqual(end(GRPCStatus(.ok), Health.response(.other(9))), .notServing(.other(9)))
        XCTAssertEqual(end(GRPCStatus(.ok), nil), .rpcFailed(GRPCStatus(.internalError, "server sent no response message")))
        guard case .rpcFailed(let broken) = end(GRPCStatus(.ok), [0x08]) else { return XCTFail("a cut response decoded") }
        XCTAssertEqual(broken.code, .internalError)
        XCTAssertTrue(broken.message.hasPrefix("grpc: failed to unmarshal the received message: "), broken.message)
        let refused = Unreachable(.connect, "dial tcp 127.0.0.1:1: connect: connection refused")
        XCTAssertEqual(end(GRPCStatus(.unavailable, "connection failed"), nil, refused), .unreachable(.unreachable(refused)))
    }

    /// An HTTP 404 where gRPC was expected maps to UNIMPLEMENTED, but the server did not say it
    /// has no health service: no edge may word it so.
    func testAnHTTP404IsNotAServerWithoutHealth() {
        let verdict = HealthServer.verdict(status: GRPCStatus.fromHTTPStatus("404"), message: nil, unreachable: nil)
        guard case .rpcFailed(let status) = verdict else { return XCTFail("\(verdict)") }
        XCTAssertFalse(status.isServerUnimplemented)
        let grpc = HealthServer.grpc(verdict).status
        XCTAssertEqual(grpc.code, .unavailable)
        XCTAssertEqual(grpc.message, "rpc error: code = Unimplemented desc = unexpected HTTP status code received from server: 404")
        let http = HealthServer.http(verdict, .ready, verbose: nil)
        XCTAssertEqual(http.status, 503)
        XCTAssertEqual(http.body, ["rpc error: code = Unimplemented desc = unexpected HTTP status code received from server: 404"])
        let own = GRPCStatus(rawCode: 12, message: "unknown service grpc.health.v1.Health", fromServer: true)
        XCTAssertEqual(HealthServer.grpc(.rpcFailed(own)).status.code, .unimplemented)
    }

    func testAStatusTheAgentConcludedIsNotPassedOnAsTheServers() {
        XCTAssertEqual(HealthServer.grpc(.rpcFailed(GRPCStatus(.deadlineExceeded, "context deadline exceeded"))).status,
                       GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
        XCTAssertEqual(HealthServer.grpc(.unreachable(.noListener)).status, GRPCStatus(.unavailable, Reason.noListener.description))
        XCTAssertEqual(HealthServer.watchEnded(GRPCStatus(.unavailable, "connection closed")).message,
                       "rpc error: code = Unavailable desc = connection closed")
        let own = GRPCStatus(rawCode: 5, message: "unknown service", fromServer: true)
        XCTAssertEqual(HealthServer.watchEnded(own), own)
    }

    /// Each edge renders the same verdict: ready on one means ready on all.
    func testEveryEdgeAgreesOnReady() {
        let verdicts: [Verdict] = [.serving, .notServing(.notServing), .notServing(.unknown), .draining, .unreachable(.starting),
                                   .rpcFailed(GRPCStatus(.deadlineExceeded, "context deadline exceeded")),
                                   .rpcFailed(GRPCStatus(rawCode: 5, message: "unknown service", fromServer: true))]
        for verdict in verdicts {
            let ready = verdict.isServing
            XCTAssertEqual(HealthServer.http(verdict, .ready, verbose: nil).status == 200, ready, "\(verdict)")
            XCTAssertEqual(HealthServer.grpc(verdict).response == .serving, ready, "\(verdict)")
            XCTAssertEqual(ServiceLine(service: "s", verdict: verdict).description.hasPrefix("[+]"), ready, "\(verdict)")
        }
    }

    func testVerboseReadyzListsEachServiceAsKubeAPIServerDoes() {
        let model = snapshot(["db": serving, "api": .notServing(.status(.notServing))], services: ["db", "api"])
        let decision = HealthServer.decide(HealthQuestion(.ready, service: nil), model)
        guard case .now(let verdict, let service) = decision else { return XCTFail("\(decision)") }
        let answer = HealthServer.http(verdict, .ready, verbose: model.lines, service: service)
        XCTAssertEqual(answer.status, 503)
        XCTAssertEqual(answer.body, ["[+]db SERVING", "[-]api NOT_SERVING", "readyz check failed: service \"api\": NOT_SERVING"])
        let ready = snapshot(["": serving])
        XCTAssertEqual(HealthServer.http(.serving, .ready, verbose: ready.lines).body, ["[+](server) SERVING", "readyz check passed"])
    }

    func testWithoutAConnectionAQuestionIsAnsweredWithTheModelsReason() {
        let model = snapshot(["": .notServing(.noListener)], connected: false)
        XCTAssertEqual(HealthServer.verdict(for: HealthQuestion(.live, service: nil), model), .unreachable(.noListener))
        XCTAssertEqual(HealthServer.verdict(for: HealthQuestion(.ready, service: "x"), model), .unreachable(.noListener))
        XCTAssertEqual(HealthServer.verdict(for: HealthQuestion(.ready, service: nil), snapshot(["": serving], draining: true)), .draining)
    }

    /// A server without a health service answers UNIMPLEMENTED itself: with the model holding
    /// so, that answer for the server as a whole is SERVING (ready and alive), and says why; for
    /// a named service, or when the UNIMPLEMENTED came from a 404, it is not.
    func testAServerWithoutAHealthServiceIsReadyBecauseItAnswersGRPC() {
        var model = snapshot(["": serving])
        model.withoutHealth = true
        var unimplemented = GRPCStatus(.unimplemented, "unknown service grpc.health.v1.Health")
        unimplemented.fromServer = true
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), model), .check(service: ""))
        let verdict = HealthServer.verdict(checking: "", status: unimplemented, message: nil, unreachable: nil, model)
        XCTAssertEqual(verdict, .serving)
        XCTAssertEqual(HealthServer.http(verdict, .ready, verbose: nil, withoutHealth: true).body,
                       ["SERVING (no health service: ready because it answers gRPC)"])
        XCTAssertEqual(HealthServer.http(verdict, .ready, verbose: model.lines, withoutHealth: true).body,
                       ["[+](server) SERVING (no health service: ready because it answers gRPC)", "readyz check passed"])
        XCTAssertEqual(HealthServer.http(verdict, .live, verbose: nil, withoutHealth: true).status, 200)
        XCTAssertEqual(HealthServer.grpc(verdict).response, .serving)
        XCTAssertEqual(HealthServer.verdict(checking: "db", status: unimplemented, message: nil, unreachable: nil, model), .rpcFailed(unimplemented))
        let notFound = GRPCStatus(.unimplemented, "unexpected HTTP status code received from server: 404")
        XCTAssertEqual(HealthServer.verdict(checking: "", status: notFound, message: nil, unreachable: nil, model), .rpcFailed(notFound))
        model.withoutHealth = false
        XCTAssertEqual(HealthServer.verdict(checking: "", status: unimplemented, message: nil, unreachable: nil, model), .rpcFailed(unimplemented))
    }

    /// A call never ends OK without a response on any edge, whatever the agent was told.
    func testNoEdgeAnswersOKWithoutAResponse() {
        for fromServer in [true, false] {
            let verdict = Verdict.rpcFailed(GRPCStatus(rawCode: 0, message: "", fromServer: fromServer))
            let grpc = HealthServer.grpc(verdict)
            XCTAssertTrue(grpc.response != nil || grpc.status.code != .ok, "\(grpc)")
            XCTAssertEqual(HealthServer.http(verdict, .ready, verbose: nil).status, 503)
        }
        XCTAssertEqual(HealthServer.verdict(status: GRPCStatus(rawCode: 0, message: "", fromServer: true), message: nil, unreachable: nil),
                       .rpcFailed(GRPCStatus(.internalError, "server sent no response message")))
    }
}
