import XCTest
import HPACK
@testable import Wire

/// The health endpoint's protocol layers, driven by hand: an HTTP/2 client's frames into the
/// connection machine in its server role, and HTTP/1.1 request heads.
final class HTTP2ServerRoleTests: XCTestCase {
    private func frames(_ bytes: [UInt8]) -> [Frame] {
        var out: [Frame] = []
        var index = 0
        while let (frame, length) = try! Frame.parse(bytes, from: index, maxFrameSize: 1 << 24) {
            out.append(frame)
            index += length
        }
        return out
    }

    private func server(_ limits: HTTP2Connection.Limits = .server) -> HTTP2Connection {
        let server = HTTP2Connection(role: .server, limits: limits)
        _ = try! server.receive(HTTP2Connection.preface + Frame(.settings, streamID: 0).serialized())
        _ = server.takeOutbound()
        return server
    }

    private static let checkHead = [HeaderField(":method", "POST"), HeaderField(":path", Health.checkPath), HeaderField(":scheme", "http"),
                                    HeaderField(":authority", "x"), HeaderField("content-type", "application/grpc")]

    private func headers(_ stream: UInt32, _ fields: [HeaderField] = checkHead, endStream: Bool = false) -> [UInt8] {
        var encoder = HPACKEncoder()
        return Frame(.headers, flags: FrameFlags.endHeaders | (endStream ? FrameFlags.endStream : 0), streamID: stream,
                     payload: encoder.encode(fields)).serialized()
    }

    private func request(_ stream: UInt32, path: String = Health.checkPath, body: [UInt8] = [0, 0, 0, 0, 0]) -> [UInt8] {
        headers(stream, HTTP2ServerRoleTests.checkHead.map { $0.name == ":path" ? HeaderField(":path", path) : $0 })
            + Frame(.data, flags: FrameFlags.endStream, streamID: stream, payload: body).serialized()
    }

    private func settings(_ pairs: [(SettingID, UInt32)]) -> [UInt8] {
        var payload: [UInt8] = []
        for (id, value) in pairs {
            payload += [UInt8(id.rawValue >> 8), UInt8(id.rawValue & 0xFF)]
            appendUInt32(value, to: &payload)
        }
        return Frame(.settings, streamID: 0, payload: payload).serialized()
    }

    private func windowUpdate(_ stream: UInt32, _ increment: UInt32) -> [UInt8] {
        var payload: [UInt8] = []
        appendUInt32(increment, to: &payload)
        return Frame(.windowUpdate, streamID: stream, payload: payload).serialized()
    }

    /// The connection error a sequence of bytes ends in, and the GOAWAY's code.
    private func connectionError(_ bytes: [UInt8], on server: HTTP2Connection) -> HTTP2ErrorCode? {
        do {
            _ = try server.receive(bytes)
            return nil
        } catch {
            guard case .connection(let code, _) = error else { return nil }
            let goAway = frames(server.takeOutbound()).last
            XCTAssertEqual(goAway?.type, FrameType.goAway.rawValue)
            XCTAssertEqual(goAway.map { Array($0.payload[4..<8]) }, [0, 0, 0, UInt8(code.rawValue)])
            return code
        }
    }

    func testARequestAndItsResponse() throws {
        let server = HTTP2Connection(role: .server, limits: .server)
        XCTAssertEqual(frames(server.takeOutbound()).map(\.type), [FrameType.settings.rawValue], "our SETTINGS first")
        let events = try server.receive(HTTP2Connection.preface + Frame(.settings, streamID: 0).serialized() + request(1))
        XCTAssertEqual(events.first, .ready)
        guard case .headers(1, let fields, false) = events[1], case .data(1, let body, true) = events[2] else { return XCTFail("\(events)") }
        XCTAssertEqual(fields.first { $0.name == ":path" }?.value, Health.checkPath)
        XCTAssertEqual(body, [0, 0, 0, 0, 0])
        server.sendHeaders(streamID: 1, [HeaderField(":status", "200")], endStream: false)
        server.sendData(streamID: 1, [0, 0, 0, 0, 2, 8, 1], endStream: false)
        server.sendHeaders(streamID: 1, [HeaderField("grpc-status", "0")], endStream: true)
        let sent = frames(server.takeOutbound())
        XCTAssertEqual(sent.map(\.type), [FrameType.settings.rawValue, FrameType.headers.rawValue, FrameType.data.rawValue, FrameType.headers.rawValue])
        XCTAssertTrue(sent[0].has(FrameFlags.ack))
        XCTAssertTrue(sent[3].has(FrameFlags.endStream))
        XCTAssertEqual(server.activeStreams, 0)
    }

    func testNotAPrefaceEndsTheConnection() {
        let server = HTTP2Connection(role: .server, limits: .server)
        XCTAssertThrowsError(try server.receive(Array("GET / HTTP/1.1\r\n\r\n".utf8)))
        XCTAssertNotNil(server.failure)
        XCTAssertEqual(frames(server.takeOutbound()).last?.type, FrameType.goAway.rawValue)
    }

    func testRapidResetIsToldToGoAway() {
        let server = server()
        var bytes: [UInt8] = []
        var stream: UInt32 = 1
        for _ in 0..<200 {
            bytes += request(stream)
            bytes += Frame(.rstStream, streamID: stream, payload: [0, 0, 0, 8]).serialized()
            stream += 2
        }
        XCTAssertEqual(connectionError(bytes, on: server), .enhanceYourCalm)
        XCTAssertEqual(server.failure, .connection(.enhanceYourCalm, "too many streams reset"))
    }

    func testStreamsOverTheLimitAreRefused() throws {
        var limits = HTTP2Connection.Limits.server
        limits.maxConcurrentStreams = 2
        let server = server(limits)
        var bytes: [UInt8] = []
        for stream: UInt32 in [1, 3, 5] { bytes += headers(stream) }
        _ = try server.receive(bytes)
        let resets = frames(server.takeOutbound()).filter { $0.type == FrameType.rstStream.rawValue }
        XCTAssertEqual(resets.map(\.streamID), [5], "stream 5 refused")
        XCTAssertEqual(resets.first.map { Array($0.payload) }, [0, 0, 0, 7], "REFUSED_STREAM")
        XCTAssertNil(server.failure)
    }

    func testAPingFloodFromAClientThatDoesNotReadEndsTheConnection() {
        let server = server()
        let ping = Frame(.ping, streamID: 0, payload: [UInt8](repeating: 7, count: 8)).serialized()
        var bytes: [UInt8] = []
        for _ in 0..<20_000 { bytes += ping }
        XCTAssertEqual(connectionError(bytes, on: server), .enhanceYourCalm)
        XCTAssertEqual(server.failure, .connection(.enhanceYourCalm, "the client does not read what it is sent"))
    }

    func testDataWaitsForTheClientsWindow() throws {
        let server = server()
        _ = try server.receive(settings([(.initialWindowSize, 3)]) + request(1))
        _ = server.takeOutbound()
        server.sendData(streamID: 1, [1, 2, 3, 4, 5], endStream: false)
        XCTAssertEqual(frames(server.takeOutbound()).map(\.payload), [[1, 2, 3]])
        _ = try server.receive(windowUpdate(1, 10))
        XCTAssertEqual(frames(server.takeOutbound()).map(\.payload), [[4, 5]])
    }

    /// A client lowering its window below what is already sent, while an answer waits on it:
    /// the window goes negative (RFC 9113 §6.9.2), nothing is sent until WINDOW_UPDATEs bring
    /// it above zero, and the rest of the answer then goes out whole. (This trapped once.)
    func testAWindowLoweredBelowZeroWhileAnAnswerWaits() throws {
        for lowered: UInt32 in [2, 0] {
            let server = server()
            _ = try server.receive(settings([(.initialWindowSize, 3)]) + request(1))
            _ = server.takeOutbound()
            server.sendData(streamID: 1, [1, 2, 3, 4, 5, 6, 7], endStream: true)
            XCTAssertEqual(frames(server.takeOutbound()).map(\.payload), [[1, 2, 3]])
            _ = try server.receive(settings([(.initialWindowSize, lowered)]))
            XCTAssertEqual(frames(server.takeOutbound()).map(\.type), [FrameType.settings.rawValue], "only the ACK: the window is \(Int(lowered) - 3)")
            _ = try server.receive(windowUpdate(1, 1))
            XCTAssertEqual(frames(server.takeOutbound()).filter { $0.type == FrameType.data.rawValue }.map(\.payload), [],
                           "the window is still at or below zero")
            _ = try server.receive(windowUpdate(1, 10))
            let rest = frames(server.takeOutbound())
            XCTAssertEqual(rest.map(\.payload), [[4, 5, 6, 7]])
            XCTAssertTrue(rest[0].has(FrameFlags.endStream))
            XCTAssertEqual(server.activeStreams, 0)
        }
    }

    func testAWindowGrantedWhileTheRequestArrivesIsKept() throws {
        let server = server()
        _ = try server.receive(settings([(.initialWindowSize, 0)]) + headers(1) + windowUpdate(1, 5)
                               + Frame(.data, flags: FrameFlags.endStream, streamID: 1, payload: [0, 0, 0, 0, 0]).serialized())
        _ = server.takeOutbound()
        server.sendData(streamID: 1, [1, 2, 3, 4, 5, 6], endStream: true)
        XCTAssertEqual(frames(server.takeOutbound()).map(\.payload), [[1, 2, 3, 4, 5]])
    }

    func testWindowOverflowOnAStreamIsAStreamFlowControlError() throws {
        let server = server()
        let events = try server.receive(headers(1) + windowUpdate(1, 0x7FFF_FFFF))
        XCTAssertEqual(events.last, .streamError(streamID: 1, code: .flowControlError, reason: "stream window overflow"))
        XCTAssertNil(server.failure)
        XCTAssertEqual(frames(server.takeOutbound()).last.map { Array($0.payload) }, [0, 0, 0, 3])
    }

    func testFramesTheProtocolForbidsEndTheConnection() {
        let cases: [(String, [UInt8], HTTP2ErrorCode)] = [
            ("WINDOW_UPDATE on an idle stream", windowUpdate(1, 1), .protocolError),
            ("PRIORITY on stream 0", Frame(.priority, streamID: 0, payload: [0, 0, 0, 1, 16]).serialized(), .protocolError),
            ("SETTINGS ACK with a payload", Frame(.settings, flags: FrameFlags.ack, streamID: 0, payload: [0, 0, 0, 0, 0, 0]).serialized(), .frameSizeError),
            ("ENABLE_PUSH 2", settings([(.enablePush, 2)]), .protocolError),
            ("PING of 7 bytes", Frame(.ping, streamID: 0, payload: [0, 0, 0, 0, 0, 0, 0]).serialized(), .frameSizeError),
            ("PING on a stream", Frame(.ping, streamID: 1, payload: [UInt8](repeating: 0, count: 8)).serialized(), .protocolError),
            ("GOAWAY on a stream", Frame(.goAway, streamID: 1, payload: [UInt8](repeating: 0, count: 8)).serialized(), .protocolError),
            ("HEADERS on an even stream", headers(2), .protocolError),
            ("DATA on an idle stream", Frame(.data, streamID: 7, payload: [1]).serialized(), .protocolError),
            ("an older stream ID", headers(5) + headers(3), .protocolError),
            ("CONTINUATION alone", Frame(.continuation, flags: FrameFlags.endHeaders, streamID: 1).serialized(), .protocolError),
            ("PUSH_PROMISE", Frame(.pushPromise, streamID: 1, payload: [0, 0, 0, 2]).serialized(), .protocolError),
        ]
        for (name, bytes, code) in cases {
            XCTAssertEqual(connectionError(bytes, on: server()), code, name)
        }
    }

    func testMalformedRequestsAreStreamProtocolErrors() throws {
        func with(_ change: ([HeaderField]) -> [HeaderField]) -> [HeaderField] { change(HTTP2ServerRoleTests.checkHead) }
        let cases: [(String, [HeaderField])] = [
            ("upper-case name", with { $0 + [HeaderField("X-Upper", "1")] }),
            ("unknown pseudo-header", [HeaderField(":unknown", "x")] + with { $0 }),
            ("response pseudo-header", [HeaderField(":status", "200")] + with { $0 }),
            ("pseudo-header after a regular one", with { $0 } + [HeaderField(":authority", "y")]),
            ("connection", with { $0 + [HeaderField("connection", "keep-alive")] }),
            ("te other than trailers", with { $0 + [HeaderField("te", "gzip")] }),
            ("no :method", with { $0.filter { $0.name != ":method" } }),
            ("empty :path", with { $0.map { $0.name == ":path" ? HeaderField(":path", "") : $0 } }),
            ("repeated :scheme", [HeaderField(":scheme", "http")] + with { $0 }),
            ("no :scheme", with { $0.filter { $0.name != ":scheme" } }),
        ]
        for (name, fields) in cases {
            let server = server()
            let events = try server.receive(headers(1, fields, endStream: true))
            guard case .streamError(1, .protocolError, _)? = events.first else { return XCTFail("\(name): \(events)") }
            XCTAssertEqual(events.count, 1, name)
            XCTAssertEqual(frames(server.takeOutbound()).map(\.type), [FrameType.rstStream.rawValue], name)
            XCTAssertNil(server.failure, name)
        }
    }

    func testContentLengthMustMatchTheBody() throws {
        let server = server()
        let events = try server.receive(headers(1, HTTP2ServerRoleTests.checkHead + [HeaderField("content-length", "6")])
                                        + Frame(.data, flags: FrameFlags.endStream, streamID: 1, payload: [0, 0, 0, 0, 0]).serialized())
        XCTAssertEqual(events.last, .streamError(streamID: 1, code: .protocolError, reason: "content-length 6 but 5 bytes of DATA"))
        let matching = try self.server().receive(headers(3, HTTP2ServerRoleTests.checkHead + [HeaderField("content-length", "5")])
                                                 + Frame(.data, flags: FrameFlags.endStream, streamID: 3, payload: [0, 0, 0, 0, 0]).serialized())
        XCTAssertEqual(matching.last, .data(streamID: 3, bytes: [0, 0, 0, 0, 0], endStream: true))
    }

    func testRequestTrailersAreAccepted() throws {
        let server = server()
        let events = try server.receive(headers(1) + Frame(.data, streamID: 1, payload: [0, 0, 0, 0, 0]).serialized()
                                        + headers(1, [HeaderField("x-trailer", "1")], endStream: true))
        XCTAssertEqual(events.last, .headers(streamID: 1, fields: [HeaderField("x-trailer", "1")], endStream: true))
        XCTAssertEqual(frames(server.takeOutbound()).filter { $0.type == FrameType.rstStream.rawValue }, [])
        let bad = try self.server().receive(headers(3) + headers(3, [HeaderField(":path", "/")], endStream: true))
        XCTAssertEqual(bad.last, .streamError(streamID: 3, code: .protocolError, reason: "pseudo-header field \":path\" in trailers"))
    }

    func testFramesOnAStreamTheClientEndedAreStreamClosed() throws {
        let server = server()
        let events = try server.receive(request(1) + Frame(.data, streamID: 1, payload: [1]).serialized())
        XCTAssertEqual(events.last, .streamError(streamID: 1, code: .streamClosed, reason: "DATA after the client ended the stream"))
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
