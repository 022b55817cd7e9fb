import Flags
import Foundation
import GateProtocol
import XCTest

final class GateProtocolTests: XCTestCase {
    static let agentMessages: [AgentMessage] = [
        .health(.serving(server: "127.0.0.1:50051")),
        .health(.notServing(.starting)),
        .health(.notServing(.noListener)),
        .health(.notServing(.noProc)),
        .health(.notServing(.noGRPCServer([.init(listener: "127.0.0.1:8080", why: .other("not HTTP/2")), .init(listener: "[::1]:9", why: .certificateRequired(foundByTLS: true)),
                                             .init(listener: "[::1]:10", why: .certificateRequired(foundByTLS: false)),
                                             .init(listener: "[::1]:11", why: .certificateRefused)]))),
        .health(.notServing(.unreachable(Unreachable(.connect, "dial tcp 127.0.0.1:1: connect: connection refused")))),
        .health(.notServing(.unreachable(Unreachable(.timeout, "i/o timeout")))),
        .health(.notServing(.status(.notServing))),
        .health(.notServing(.status(.other(-7)))),
        .health(.notServing(.rpc(GRPCStatus(rawCode: 14, message: "gone", fromServer: true)))),
        .health(.notServing(.rpc(GRPCStatus(rawCode: 99, message: "", fromServer: false)))),
        .health(.notServing(.rpc(GRPCStatus(.deadlineExceeded, "context deadline exceeded")))),
        .health(.notServing(.undecodable("truncated"))),
        .health(.notServing(.setup("no such file"))),
        .health(.notServing(.draining)),
        .health(.notServing(.awaitingAnswer)),
        .health(.notServing(.service("db", .status(.notServing)))),
        .service(name: "api", state: .serving(server: "127.0.0.1:1")),
        .answered,
        .found(server: "[::1]:50051", pid: 42, reach: .tlsUnverified),
        .found(server: "unix:/run/s", pid: nil, reach: .plaintext),
        .passedOver(listener: "127.0.0.1:9090", pid: 7, why: .other("HTTP/1.1")),
        .passedOver(listener: "127.0.0.1:9091", pid: nil, why: .certificateRequired(foundByTLS: true)),
        .goAway(server: "127.0.0.1:1"),
        .noWatch(server: "127.0.0.1:1", interval: 250_000_000),
        .noHealthService(server: "127.0.0.1:1"),
        .svid(id: "spiffe://example.org/a", rotated: true),
        .tlsOnHealthPort,
        .invalidConfiguration("why"),
    ]

    func decodeAll(_ bytes: [UInt8]) throws -> [AgentMessage] {
        var decoder = GateFraming.Decoder()
        decoder.append(bytes)
        var out: [AgentMessage] = []
        while let frame = try decoder.nextFrame() {
            if let message = try AgentMessage.decode(kind: frame.kind, payload: frame.payload) { out.append(message) }
        }
        return out
    }

    func testEveryAgentMessageRoundTrips() throws {
        let bytes = Self.agentMessages.flatMap(\.frame)
        XCTAssertEqual(try decodeAll(bytes), Self.agentMessages)
        // Byte by byte, as a pipe may deliver them.
        var decoder = GateFraming.Decoder()
        var out: [AgentMessage] = []
        for byte in bytes {
            decoder.append([byte])
            while let frame = try decoder.nextFrame() {
                if let message = try AgentMessage.decode(kind: frame.kind, payload: frame.payload) { out.append(message) }
            }
        }
        XCTAssertEqual(out, Self.agentMessages)
    }

    func testTheConfigurationRoundTrips() throws {
        var c = GateConfiguration()
        c.addr = "localhost:50051"
        c.services = ["db", "api"]
        c.answerInterval = GoDuration(nanoseconds: 5_000_000)
        c.servesLocalProbes = true
        c.interval = GoDuration(nanoseconds: 7)
        c.tls.tls = true
        c.tls.caCert = "/ca.pem"
        c.tls.serverName = "svc"
        c.spiffe = false
        c.rpcHeaders = ["a: b", "c:d"]
        c.healthAddr = ":8086"
        for message in [SupervisorMessage.configure(c), .drain] {
            var decoder = GateFraming.Decoder()
            decoder.append(message.frame)
            let frame = try XCTUnwrap(try decoder.nextFrame())
            XCTAssertEqual(try SupervisorMessage.decode(kind: frame.kind, payload: frame.payload), message)
        }
    }

    /// The gate's durations cross the protocol as they were given, up to Go's largest.
    func testDurationsAtGosLargestRoundTrip() throws {
        var c = GateConfiguration()
        let largest = GoDuration(nanoseconds: .max)
        (c.interval, c.connectTimeout, c.rpcTimeout, c.healthTimeout, c.answerInterval) = (largest, largest, largest, largest, largest)
        let query = LocalQuery(service: nil, verbose: false, timeout: largest)
        var decoder = GateFraming.Decoder()
        decoder.append(SupervisorMessage.configure(c).frame + query.frame)
        let configure = try XCTUnwrap(try decoder.nextFrame())
        XCTAssertEqual(try SupervisorMessage.decode(kind: configure.kind, payload: configure.payload), .configure(c))
        let asked = try XCTUnwrap(try decoder.nextFrame())
        XCTAssertEqual(try LocalQuery.decode(kind: asked.kind, payload: asked.payload).timeout, largest)
        XCTAssertThrowsError(try LocalQuery.decode(kind: asked.kind, payload: LocalQuery(service: nil, verbose: false, timeout: GoDuration(nanoseconds: .min)).frame.dropFirst(4).map { $0 }),
                             "a timeout that is not positive is refused")
    }

    func testUnknownKindsAreSkippedAndBrokenFramesRefused() throws {
        // A newer agent's message of a kind we do not know: skipped, the next one read.
        var bytes: [UInt8] = [GateFraming.version, 200, 0, 3, 1, 2, 3]
        bytes += AgentMessage.tlsOnHealthPort.frame
        XCTAssertEqual(try decodeAll(bytes), [.tlsOnHealthPort])
        XCTAssertThrowsError(try decodeAll([9, 1, 0, 0])) { XCTAssertEqual($0 as? GateFraming.Failure, .version(9)) }
        XCTAssertThrowsError(try decodeAll([GateFraming.version, 1, 0xFF, 0xFF])) {
            XCTAssertEqual($0 as? GateFraming.Failure, .oversized(0xFFFF))
        }
        // A known kind with a payload that does not decode: refused, not guessed at.
        XCTAssertThrowsError(try decodeAll([GateFraming.version, 1, 0, 1, 7]))
        XCTAssertThrowsError(try decodeAll([GateFraming.version, 1, 0, 3, 0, 0, 9]))
    }

    func testLongTextIsCutToFitOneFrame() throws {
        let long = String(repeating: "é", count: 10_000)
        let many = (0..<100).map { Reason.Candidate(listener: "127.0.0.1:\($0)", why: .other(long)) }
        let frame = AgentMessage.health(.notServing(.noGRPCServer(many))).frame
        XCTAssertLessThanOrEqual(frame.count, 4 + GateFraming.maxPayload)
        guard case .health(.notServing(.noGRPCServer(let got))) = try decodeAll(frame).first else { return XCTFail() }
        XCTAssertGreaterThan(got.count, 0)
        XCTAssertTrue(got.allSatisfy { $0.why.description.utf8.count <= GateFraming.maxString && $0.why.description.allSatisfy { $0 == "é" } })
    }

    /// Random bytes never crash the decoder, and what it accepts encodes back the same.
    func testRandomInputNeitherCrashesNorLies() throws {
        var generator = SystemRandomNumberGenerator()
        let seeds = Self.agentMessages.map(\.frame)
        for _ in 0..<20_000 {
            var bytes = seeds.randomElement(using: &generator)!
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                bytes[index] = UInt8.random(in: 0...255, using: &generator)
            }
            var decoder = GateFraming.Decoder()
            decoder.append(bytes)
            guard let frame = try? decoder.nextFrame(), let message = try? AgentMessage.decode(kind: frame.kind, payload: frame.payload) else { continue }
            XCTAssertEqual(try decodeAll(message.frame), [message])
        }
    }

    /// The kept corpus (Tests/fuzz/corpus/gate, scripts/fuzz.sh's seeds), both directions: each
    /// seed decodes to at least one message, and every message survives its own encoding.
    func testTheKeptCorpusDecodesAndRoundTrips() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../fuzz/corpus/gate").standardized
        let seeds = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        XCTAssertGreaterThanOrEqual(seeds.count, 5)
        for seed in seeds {
            let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(seed)))
            var agent = GateFraming.Decoder()
            var supervisor = GateFraming.Decoder()
            agent.append(bytes)
            supervisor.append(bytes)
            var decoded = 0
            while let frame = try agent.nextFrame() {
                guard let message = try? AgentMessage.decode(kind: frame.kind, payload: frame.payload) else { continue }
                XCTAssertEqual(try decodeAll(message.frame), [message], seed)
                decoded += 1
            }
            while let frame = try supervisor.nextFrame() {
                guard let message = try? SupervisorMessage.decode(kind: frame.kind, payload: frame.payload) else { continue }
                var again = GateFraming.Decoder()
                again.append(message.frame)
                let copy = try XCTUnwrap(try again.nextFrame())
                XCTAssertEqual(try SupervisorMessage.decode(kind: copy.kind, payload: copy.payload), message, seed)
                decoded += 1
            }
            XCTAssertGreaterThan(decoded, 0, "\(seed) holds a message")
        }
    }

    func testReasonsAreWordedOnce() {
        XCTAssertEqual(Reason.noGRPCServer([.init(listener: "a", why: .other("b")), .init(listener: "c", why: .other("d"))]).description,
                       "no gRPC server among the listening sockets: a: b; c: d")
        // The advice names the gate's flags as its table declares them.
        XCTAssertEqual(Rejection.certificateRequired(foundByTLS: true).description,
                       "a TLS server that requires a client certificate (give -ready-tls-client-cert and -ready-tls-client-key, or -ready-spiffe)")
        XCTAssertEqual(Rejection.certificateRequired(foundByTLS: false).description,
                       "the server requires a client certificate (give -ready-tls-client-cert and -ready-tls-client-key, or -ready-spiffe)")
        XCTAssertEqual(Rejection.certificateRefused.description, "the server requires a client certificate and rejected ours")
        XCTAssertEqual(Reason.noProc.description, "cannot find the server's port without /proc (give -ready-addr)")
        XCTAssertEqual(Reason.rpc(GRPCStatus(.unavailable, "x")).description, "rpc error: code = Unavailable desc = x")
        XCTAssertEqual(Reason.service("db", .status(.serviceUnknown)).description, "service \"db\": SERVICE_UNKNOWN")
    }

    /// Whether the server sent a status survives the trip: it decides how each edge words it.
    func testAStatusKeepsWhoSentIt() throws {
        for fromServer in [true, false] {
            let message = AgentMessage.health(.notServing(.rpc(GRPCStatus(rawCode: 12, message: "no", fromServer: fromServer))))
            let frame = message.frame
            var decoder = GateFraming.Decoder()
            decoder.append(frame)
            let read = try XCTUnwrap(try decoder.nextFrame())
            guard case .health(.notServing(.rpc(let status)))? = try AgentMessage.decode(kind: read.kind, payload: read.payload) else {
                return XCTFail("\(message) did not come back")
            }
            XCTAssertEqual(status.fromServer, fromServer)
        }
    }

    /// The local probe's answer: each verdict and its lines, and back.
    func testLocalAnswersRoundTrip() throws {
        let verdicts: [Verdict] = [.serving, .notServing(.serviceUnknown), .draining, .unreachable(.noListener),
                                   .unreachable(.unreachable(Unreachable(.handshake, "closed"))),
                                   .rpcFailed(GRPCStatus(rawCode: 5, message: "unknown service", fromServer: true))]
        for verdict in verdicts {
            let answer = LocalAnswer(verdict: verdict, server: "127.0.0.1:1",
                                     services: verdicts.map { ServiceLine(service: "s", verdict: $0) })
            var decoder = GateFraming.Decoder()
            decoder.append(answer.frame)
            let read = try XCTUnwrap(try decoder.nextFrame())
            let back = try LocalAnswer.decode(kind: read.kind, payload: read.payload)
            XCTAssertEqual(back, answer)
            XCTAssertEqual(back.services.map(\.verdict.isServing), verdicts.map(\.isServing))
        }
    }
}
