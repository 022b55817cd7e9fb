import XCTest
import HPACK
@testable import Wire

/// The health endpoint's protocol layers, driven by hand: an HTTP/2 client talking to
/// HTTP2ServerConnection, and HTTP/1.1 request heads.
final class HTTP2ServerConnectionTests: XCTestCase {
    private func frames(_ bytes: [UInt8]) -> [Frame] {
        var out: [Frame] = []
        var index = 0
        while let (frame, length) = try! Frame.parse(bytes, from: index, maxFrameSize: 1 << 24) {
            out.append(frame)
            index += length
        }
        return out
    }

    private func request(_ stream: UInt32, path: String = Health.checkPath, body: [UInt8] = [0, 0, 0, 0, 0]) -> [UInt8] {
        var encoder = HPACKEncoder()
        let block = encoder.encode([HeaderField(":method", "POST"), HeaderField(":path", path), HeaderField(":scheme", "http"),
                                    HeaderField(":authority", "x"), HeaderField("content-type", "application/grpc")])
        return Frame(.headers, flags: FrameFlags.endHeaders, streamID: stream, payload: block).serialized()
            + Frame(.data, flags: FrameFlags.endStream, streamID: stream, payload: body).serialized()
    }

    func testARequestAndItsResponse() {
        let server = HTTP2ServerConnection()
        XCTAssertEqual(frames(server.takeOutbound()).map(\.type), [FrameType.settings.rawValue], "our SETTINGS first")
        let events = server.receive(HTTP2Connection.preface + Frame(.settings, streamID: 0).serialized() + request(1))
        guard case .request(1, let fields, let body)? = events.first else { return XCTFail("\(events)") }
        XCTAssertEqual(fields.first { $0.name == ":path" }?.value, Health.checkPath)
        XCTAssertEqual(body, [0, 0, 0, 0, 0])
        server.sendHeaders(streamID: 1, [HeaderField(":status", "200")], endStream: false)
        server.sendData(streamID: 1, [0, 0, 0, 0, 2, 8, 1], endStream: false)
        server.sendHeaders(streamID: 1, [HeaderField("grpc-status", "0")], endStream: true)
        let sent = frames(server.takeOutbound())
        XCTAssertEqual(sent.map(\.type), [FrameType.settings.rawValue, FrameType.headers.rawValue, FrameType.data.rawValue, FrameType.headers.rawValue])
        XCTAssertTrue(sent[0].has(FrameFlags.ack))
        XCTAssertTrue(sent[3].has(FrameFlags.endStream))
        XCTAssertEqual(server.openStreams, 0)
    }

    func testNotAPrefaceEndsTheConnection() {
        let server = HTTP2ServerConnection()
        XCTAssertEqual(server.receive(Array("GET / HTTP/1.1\r\n\r\n".utf8)), [])
        XCTAssertNotNil(server.closing)
        XCTAssertEqual(frames(server.takeOutbound()).last?.type, FrameType.goAway.rawValue)
    }

    func testRapidResetIsToldToGoAway() {
        let server = HTTP2ServerConnection()
        var bytes = HTTP2Connection.preface
        var stream: UInt32 = 1
        for _ in 0..<200 {
            bytes += request(stream)
            bytes += Frame(.rstStream, streamID: stream, payload: [0, 0, 0, 8]).serialized()
            stream += 2
        }
        _ = server.receive(bytes)
        XCTAssertEqual(server.closing, "too many streams reset")
        let goAway = frames(server.takeOutbound()).last!
        XCTAssertEqual(goAway.type, FrameType.goAway.rawValue)
        XCTAssertEqual(Array(goAway.payload[4..<8]), [0, 0, 0, 0x0b], "ENHANCE_YOUR_CALM")
    }

    func testStreamsOverTheLimitAreRefusedAndBodiesAreBounded() {
        var limits = HTTP2ServerConnection.Limits()
        limits.maxConcurrentStreams = 2
        let server = HTTP2ServerConnection(limits: limits)
        _ = server.takeOutbound()
        var encoder = HPACKEncoder()
        let block = encoder.encode([HeaderField(":method", "POST"), HeaderField(":path", "/x")])
        var bytes = HTTP2Connection.preface
        for stream: UInt32 in [1, 3, 5] { bytes += Frame(.headers, flags: FrameFlags.endHeaders, streamID: stream, payload: block).serialized() }
        bytes += Frame(.data, streamID: 1, payload: [UInt8](repeating: 0, count: 16_384)).serialized()
        bytes += Frame(.data, streamID: 1, payload: [UInt8](repeating: 0, count: 16_384)).serialized()
        XCTAssertEqual(server.receive(bytes), [])
        let resets = frames(server.takeOutbound()).filter { $0.type == FrameType.rstStream.rawValue }
        XCTAssertEqual(resets.map(\.streamID), [5, 1], "stream 5 refused, stream 1's body too large")
        XCTAssertNil(server.closing)
    }

    func testAPingFloodFromAClientThatDoesNotReadEndsTheConnection() {
        let server = HTTP2ServerConnection()
        let ping = Frame(.ping, streamID: 0, payload: [UInt8](repeating: 7, count: 8)).serialized()
        var bytes = HTTP2Connection.preface
        for _ in 0..<20_000 { bytes += ping }
        _ = server.receive(bytes)
        XCTAssertEqual(server.closing, "the client does not read what it is sent")
    }

    func testDataWaitsForTheClientsWindow() {
        let server = HTTP2ServerConnection()
        var settings: [UInt8] = [0, 4]
        appendUInt32(3, to: &settings)  // SETTINGS_INITIAL_WINDOW_SIZE = 3
        _ = server.receive(HTTP2Connection.preface + Frame(.settings, streamID: 0, payload: settings).serialized() + request(1))
        _ = server.takeOutbound()
        server.sendData(streamID: 1, [1, 2, 3, 4, 5], endStream: false)
        XCTAssertEqual(frames(server.takeOutbound()).map(\.payload), [[1, 2, 3]])
        _ = server.receive(Frame(.windowUpdate, streamID: 1, payload: [0, 0, 0, 10]).serialized())
        XCTAssertEqual(frames(server.takeOutbound()).map(\.payload), [[4, 5]])
    }
}

final class HTTP1RequestTests: XCTestCase {
    func testARequestHeadWithAQuery() {
        let head = Array("GET /readyz?service=grpc.health.v1.Health&timeout=2s&x=a%20b+c HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe/1.31\r\n\r\nrest".utf8)
        guard case .request(let request, let length) = HTTP1Request.parse(head, limit: 8192) else { return XCTFail() }
        XCTAssertEqual(length, head.count - 4)
        XCTAssertEqual(request.method, "GET")
        XCTAssertEqual(request.path, "/readyz")
        XCTAssertEqual(request.parameter("service"), "grpc.health.v1.Health")
        XCTAssertEqual(request.parameter("timeout"), "2s")
        XCTAssertEqual(request.parameter("x"), "a b c")
        XCTAssertEqual(request.headers.first?.0, "host")
    }

    func testIncompleteOversizedAndMalformedHeads() {
        XCTAssertEqual(HTTP1Request.parse(Array("GET /readyz HTTP/1.1\r\nHost: x\r\n".utf8), limit: 8192), .incomplete)
        let huge = Array(("GET /readyz HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000)).utf8)
        XCTAssertEqual(HTTP1Request.parse(huge, limit: 8192), .invalid(status: 431, reason: "request head larger than 8192 bytes"))
        XCTAssertEqual(HTTP1Request.parse(Array("GARBAGE\r\n\r\n".utf8), limit: 8192), .invalid(status: 400, reason: "malformed request line"))
        XCTAssertEqual(HTTP1Request.parse(Array("GET /a%zz HTTP/1.1\r\n\r\n".utf8), limit: 8192), .invalid(status: 400, reason: "malformed path"))
        XCTAssertEqual(HTTP1Request.parse(Array("GET / HTTP/2.0\r\n\r\n".utf8), limit: 8192), .invalid(status: 505, reason: "unsupported version"))
        XCTAssertEqual(HTTP1Request.parse([0x16, 0x03, 0x01, 0x0A, 0x0A], limit: 8192), .invalid(status: 400, reason: "malformed request line"))
    }

    func testGRPCTimeoutValues() {
        XCTAssertEqual(decodeGRPCTimeout("1S"), 1_000_000_000)
        XCTAssertEqual(decodeGRPCTimeout("250m"), 250_000_000)
        XCTAssertEqual(decodeGRPCTimeout("99999999H"), Int64.max)
        XCTAssertNil(decodeGRPCTimeout("1s"))
        XCTAssertNil(decodeGRPCTimeout("123456789S"))
        XCTAssertEqual(Health.response(.serving), [8, 1])
        XCTAssertEqual(Health.response(.unknown), [])
        XCTAssertEqual(try Health.decodeRequest(Health.request(service: "svc")), "svc")
    }
}
