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

    // MARK: The servers' fresh Lists

    func testAVerboseReadyQuestionTakesTheServersListsFirstAndNoOtherDoes() {
        var model = snapshot(["": serving])
        model.listable = ["a:1", "b:2"]
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil, verbose: true), model), .list(servers: ["a:1", "b:2"]))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.list, service: nil), model), .list(servers: ["a:1", "b:2"]))
        // Asked again with what the Lists gave, the question goes on as one that is not verbose.
        let listed = [ServerListing(server: "a:1", .listed(["x": .serving]))]
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil, verbose: true, listings: listed), model), .check(service: ""))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.list, service: nil, listings: listed), model), .now(.serving))
        // kubelet's questions take no List.
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil), model), .check(service: ""))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.live, service: nil, verbose: true), model), .check(service: ""))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.watch, service: "", verbose: true), model), .watch(service: ""))
        // No server to list (none, or each remembered without List): answered as before.
        model.listable = []
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.ready, service: nil, verbose: true), model), .check(service: ""))
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.list, service: nil), model), .now(.serving))
    }

    func testAListEndsInWhatItListedTheServersUnimplementedOrWhyNot() {
        let message = Health.listResponse([("b", .notServing), ("a", .serving)])
        XCTAssertEqual(HealthServer.listing(status: GRPCStatus(.ok), message: message, unreachable: nil), .listed(["a": .serving, "b": .notServing]))
        XCTAssertEqual(HealthServer.listing(status: GRPCStatus(rawCode: 12, message: "unknown method List", fromServer: true), message: nil, unreachable: nil),
                       .unimplemented)
        // An UNIMPLEMENTED the client concluded (an HTTP 404) is no answer of the server's.
        XCTAssertEqual(HealthServer.listing(status: GRPCStatus.fromHTTPStatus("404"), message: nil, unreachable: nil),
                       .failed(.rpcFailed(GRPCStatus.fromHTTPStatus("404"))))
        let many = Health.listResponse((0..<101).map { ("s\($0)", .serving) })
        XCTAssertEqual(HealthServer.listing(status: GRPCStatus(.ok), message: many, unreachable: nil),
                       .failed(.rpcFailed(GRPCStatus(.resourceExhausted, "the server listed 101 services, more than 100"))))
        XCTAssertEqual(HealthServer.listing(status: GRPCStatus(.ok), message: nil, unreachable: nil),
                       .failed(.rpcFailed(GRPCStatus(.internalError, "server sent no response message"))))
        XCTAssertEqual(HealthServer.listing(status: GRPCStatus(.unavailable), message: nil, unreachable: Unreachable(.connect, "connection refused")),
                       .failed(.unreachable(.unreachable(Unreachable(.connect, "connection refused")))))
    }

    func testListedServicesAreSaidAsListedAndNotRequired() {
        let model = snapshot(["db": serving], services: ["db"])
        let listed = [ServerListing(server: "s:1", .listed(["db": .notServing, "cache": .notServing, "": .serving, "q\n": .serving]))]
        XCTAssertEqual(model.lines(listed).map(\.description),
                       ["[+]db SERVING", "[+](server) SERVING (listed, not required)", "[-]cache NOT_SERVING (listed, not required)",
                        "[+]q\n SERVING (listed, not required)"])
        let (status, body) = HealthServer.http(.serving, .ready, verbose: model.lines(listed))
        XCTAssertEqual(status, 200)
        XCTAssertEqual(body.last, "readyz check passed")
        // A List that failed is one line; one without List says nothing.
        let failed = [ServerListing(server: "s:1", HealthServer.listTimedOut)]
        XCTAssertEqual(model.lines(failed).map(\.description),
                       ["[+]db SERVING", "[?]services could not be listed: rpc error: code = DeadlineExceeded desc = context deadline exceeded"])
        XCTAssertEqual(model.lines([ServerListing(server: "s:1", .unimplemented)]), model.lines)
        // While grpc-init drains nothing listed is SERVING either.
        var draining = model
        draining.draining = true
        XCTAssertEqual(draining.lines([ServerListing(server: "s:1", .listed(["x": .serving]))]).last?.description,
                       "[-]x NOT_SERVING (draining) (listed, not required)")
    }

    func testWithSeveralServersEachOnesListedServicesFollowItsOwn() {
        var model = snapshot(["": serving])
        model.servers = [ServerStates(name: "a:1", states: ["": serving], counts: true), ServerStates(name: "b:2", states: ["": serving], counts: true)]
        let listed = [ServerListing(server: "a:1", .listed(["x": .serving])), ServerListing(server: "b:2", .failed(.rpcFailed(GRPCStatus(.unavailable, "gone"))))]
        XCTAssertEqual(model.lines(listed).map(\.description),
                       ["[+]a:1 SERVING", "[+]a:1 x SERVING (listed, not required)", "[+]b:2 SERVING",
                        "[?]b:2 services could not be listed: rpc error: code = Unavailable desc = gone"])
    }

    func testTheEndpointsListIsTheModelAndTheServersListsMerged() {
        let model = snapshot(["db": serving, "api": .notServing(.status(.notServing))], services: ["db", "api"])
        func list(_ verdict: Verdict, _ model: HealthSnapshot, _ listings: [ServerListing]) -> [String: ServingStatus]? {
            HealthServer.grpcList(verdict, model, listings).response.map { Dictionary(uniqueKeysWithValues: $0.map { ($0.service, $0.status) }) }
        }
        let listings = [ServerListing(server: "b:2", .listed(["x": .notServing, "y": .serving, "api": .serving, "": .notServing])),
                        ServerListing(server: "a:1", .listed(["x": .serving, "y": .serving, "z": .serviceUnknown])),
                        ServerListing(server: "c:3", .failed(.rpcFailed(GRPCStatus(.unavailable))))]
        // The model's word for what it watches and for the server as a whole; a name two servers
        // list is SERVING only if both say so.
        XCTAssertEqual(list(.notServing(.notServing), model, listings),
                       ["": .notServing, "db": .serving, "api": .notServing, "x": .notServing, "y": .serving, "z": .serviceUnknown])
        XCTAssertEqual(HealthServer.grpcList(.serving, model, []).response?.map(\.service), ["", "api", "db"])
        var draining = model
        draining.draining = true
        XCTAssertEqual(list(.draining, draining, listings)?.values.contains(.serving), false)
        // More than A90's 100 entries, counting grpc-init's own.
        let hundred = [ServerListing(server: "a:1", .listed(Dictionary(uniqueKeysWithValues: (0..<97).map { ("s\($0)", ServingStatus.serving) })))]
        XCTAssertEqual(HealthServer.grpcList(.serving, model, hundred).status, GRPCStatus(.ok))
        let more = [ServerListing(server: "a:1", .listed(Dictionary(uniqueKeysWithValues: (0..<98).map { ("s\($0)", ServingStatus.serving) })))]
        XCTAssertEqual(HealthServer.grpcList(.serving, model, more).status, HealthServer.listTooLong)
        XCTAssertNil(HealthServer.grpcList(.serving, model, more).response)
        // No connection at all: the Check's UNAVAILABLE.
        let lost = snapshot(["": .notServing(.noListener)], connected: false)
        XCTAssertEqual(HealthServer.decide(HealthQuestion(.list, service: nil), lost), .now(.unreachable(.noListener)))
        XCTAssertEqual(HealthServer.grpcList(.unreachable(.noListener), lost, []).status, GRPCStatus(.unavailable, "no listening socket found yet"))
    }

    func testTheLocalAnswerCarriesTheListedLines() throws {
        let lines = [ServiceLine(service: "", verdict: .serving), ServiceLine(service: "x", verdict: .notServing(.notServing), role: .listed),
                     ServiceLine(service: "", verdict: .rpcFailed(GRPCStatus(.unavailable, "gone")), role: .listFailed)]
        let answer = LocalAnswer(verdict: .serving, server: "s:1", services: lines)
        let frame = answer.frame
        var decoder = GateFraming.Decoder()
        decoder.append(frame)
        let (kind, payload) = try XCTUnwrap(try decoder.nextFrame())
        XCTAssertEqual(try LocalAnswer.decode(kind: kind, payload: payload), answer)
    }

    /// A verbose question's Lists take at most half of its time, so the Check after them always
    /// has the rest; a call started late still carries a deadline.
    func testTheListsTakeAtMostHalfOfTheQuestionsTime() {
        let now: Int64 = 5_000_000_000
        let deadline = now + 1_000_000_000
        XCTAssertEqual(HealthServer.listsDeadline(now: now, deadline: deadline), now + 500_000_000)
        XCTAssertEqual(HealthServer.remaining(until: deadline, now: now + 500_000_000), 500_000_000)
        XCTAssertEqual(HealthServer.remaining(until: deadline, now: deadline + 1), 1)
        XCTAssertEqual(HealthServer.remaining(until: .max, now: .min), .max)
        XCTAssertEqual(HealthServer.remaining(until: .min, now: .max), 1)
        XCTAssertEqual(HealthServer.listsDeadline(now: .max - 1, deadline: .max), .max - 1)
        XCTAssertEqual(HealthServer.listsDeadline(now: 1, deadline: .max), 1 + (.max - 1) / 2)
    }

    /// More lines than a frame's list holds: the probe's last line says how many it left out.
    func testTheLocalAnswerSaysHowManyLinesItLeftOut() throws {
        let required = (0..<40).map { ServiceLine(service: "r\($0)", verdict: .serving) }
        let listed = (0..<35).map { ServiceLine(service: "l\($0)", verdict: .serving, role: .listed) }
        for (lines, shown) in [(required, 32), (listed, 32), (required + listed, 64), (Array(required.prefix(32)), 32)] {
            var decoder = GateFraming.Decoder()
            decoder.append(LocalAnswer(verdict: .serving, server: "s:1", services: lines).frame)
            let (kind, payload) = try XCTUnwrap(try decoder.nextFrame())
            let back = try LocalAnswer.decode(kind: kind, payload: payload)
            XCTAssertEqual(back.services.count, shown)
            XCTAssertEqual(back.notShown, lines.count - shown)
            XCTAssertEqual(back.lines.count, shown + (lines.count > shown ? 1 : 0))
            if lines.count > shown { XCTAssertEqual(back.lines.last, "[?]\(lines.count - shown) more services not shown") }
        }
        // Lines too long for the frame: cut where the payload is full, the count still fits.
        let long = (0..<20).map { ServiceLine(service: String(repeating: "x", count: 4000) + "\($0)", verdict: .serving, role: .listed) }
        let frame = LocalAnswer(verdict: .serving, server: "s:1", services: long).frame
        var decoder = GateFraming.Decoder()
        decoder.append(frame)
        let (kind, payload) = try XCTUnwrap(try decoder.nextFrame())
        let back = try LocalAnswer.decode(kind: kind, payload: payload)
        XCTAssertGreaterThan(back.notShown, 0)
        XCTAssertEqual(back.services.count + back.notShown, long.count)
    }
}
