import GateProtocol
import XCTest
import HPACK
@testable import Wire

/// A scripted server side for one stream: HPACK-encoded header blocks and framed messages.
struct ScriptedServer {
    var encoder = HPACKEncoder()

    mutating func headers(_ id: UInt32, _ fields: [(String, String)], end: Bool) -> [UInt8] {
        let block = encoder.encode(fields.map { HeaderField($0.0, $0.1) })
        return Frame(.headers, flags: FrameFlags.endHeaders | (end ? FrameFlags.endStream : 0), streamID: id, payload: block).serialized()
    }

    func message(_ id: UInt32, _ body: [UInt8], compressed: Bool = false, end: Bool = false) -> [UInt8] {
        let n = UInt32(body.count)
        let payload = [compressed ? 1 : 0, UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body
        return Frame(.data, flags: end ? FrameFlags.endStream : 0, streamID: id, payload: payload).serialized()
    }
}

final class GRPCClientTests: XCTestCase {
    func readyClient() -> GRPCClient {
        let client = GRPCClient(GRPCClient.Settings(authority: "example:50051", userAgent: Array("grpc_health_probe grpc-init/test".utf8)))
        client.receive(settingsFrame())
        _ = client.connection.takeOutbound()
        return client
    }

    func testRequestHeadersAndMessage() throws {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, metadata: [HeaderField("X-Token", "abc")], timeoutNanoseconds: 1_000_000_000,
                                    request: Health.request(service: "foo"))
        let sent = frames(client.connection.takeOutbound())
        XCTAssertEqual(sent.map(\.type), [FrameType.headers.rawValue, FrameType.data.rawValue])
        var decoder = HPACKDecoder()
        let fields = try decoder.decode(sent[0].payload)
        XCTAssertEqual(Array(fields.prefix(4)), [HeaderField(":method", "POST"), HeaderField(":scheme", "http"),
                                                 HeaderField(":path", "/grpc.health.v1.Health/Check"), HeaderField(":authority", "example:50051")])
        for expected in [HeaderField("content-type", "application/grpc"), HeaderField("te", "trailers"),
                         HeaderField("user-agent", "grpc_health_probe grpc-init/test"), HeaderField("grpc-timeout", "1000000u"),
                         HeaderField("x-token", "abc"), HeaderField("grpc-accept-encoding", "gzip")] {
            XCTAssertTrue(fields.contains(expected), "missing \(expected)")
        }
        XCTAssertEqual(sent[1].payload, [0, 0, 0, 0, 5, 0x0A, 3, 0x66, 0x6F, 0x6F])
        XCTAssertTrue(sent[1].has(FrameFlags.endStream))
        XCTAssertNil(call.status)
    }

    func testUnaryResponseWithTrailers() throws {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, request: Health.request(service: ""))
        var server = ScriptedServer()
        client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc")], end: false)
                       + server.message(1, [0x08, 0x01])
                       + server.headers(1, [("grpc-status", "0")], end: true))
        XCTAssertEqual(call.status, GRPCStatus(.ok))
        XCTAssertEqual(try Health.decodeResponse(try XCTUnwrap(call.nextMessage())), .serving)
    }

    func testTrailersOnlyWithPercentEncodedMessage() {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, request: [])
        var server = ScriptedServer()
        client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "5"),
                                          ("grpc-message", "unknown%20service%3A caf%C3%A9%")], end: true))
        XCTAssertEqual(call.status?.description, "rpc error: code = NotFound desc = unknown service: café%")
    }

    func testGzipResponseIsInflated() throws {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, request: [])
        var server = ScriptedServer()
        let compressed = try Gzip.compress([0x08, 0x02])
        client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc+proto"), ("grpc-encoding", "gzip")], end: false)
                       + server.message(1, compressed, compressed: true)
                       + server.headers(1, [("grpc-status", "0")], end: true))
        XCTAssertEqual(call.status, GRPCStatus(.ok))
        XCTAssertEqual(try Health.decodeResponse(try XCTUnwrap(call.nextMessage())), .notServing)
    }

    /// The status of a Check call after the server's bytes that `build` makes.
    func status(_ build: (inout ScriptedServer) -> [UInt8]) -> GRPCStatus? {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, request: [])
        var server = ScriptedServer()
        client.receive(build(&server))
        return call.status
    }

    func testHostileResponses() {
        let ok = [(":status", "200"), ("content-type", "application/grpc")]
        XCTAssertEqual(status { $0.headers(1, ok, end: false) + [0, 0, 5, 0, 0, 0, 0, 0, 1, 0, 0x7F, 0xFF, 0xFF, 0xFF] }?.code, .resourceExhausted)
        XCTAssertEqual(status { $0.headers(1, [(":status", "404")], end: true) }?.code, .unimplemented)
        XCTAssertEqual(status { $0.headers(1, [(":status", "200"), ("content-type", "text/html")], end: true) }?.code, .unknown)
        XCTAssertEqual(status { $0.headers(1, ok, end: false) + $0.message(1, [8, 1], end: true) }?.code, .internalError)
        XCTAssertEqual(status { $0.headers(1, ok + [("grpc-status", "x")], end: true) }?.code, .internalError)
        XCTAssertEqual(status { $0.headers(1, ok, end: false) + $0.message(1, [1, 2], compressed: true) }?.code, .internalError)
        // REFUSED_STREAM: sent again once on a new stream (3); refused again, the call fails.
        XCTAssertEqual(status { _ in Frame(.rstStream, streamID: 1, payload: [0, 0, 0, 7]).serialized() }, nil)
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, request: [])
        client.receive(Frame(.rstStream, streamID: 1, payload: [0, 0, 0, 7]).serialized())
        XCTAssertEqual(call.streamID, 3)
        client.receive(Frame(.rstStream, streamID: 3, payload: [0, 0, 0, 7]).serialized())
        XCTAssertEqual(call.status?.code, .unavailable)
        XCTAssertTrue(call.wasNotProcessed)
        XCTAssertEqual(status { _ in Frame(.goAway, streamID: 0, payload: [0, 0, 0, 0, 0, 0, 0, 0]).serialized() }?.code, .unavailable)
        XCTAssertEqual(status { _ in Frame(.headers, flags: FrameFlags.endHeaders, streamID: 1, payload: [0xFF]).serialized() }?.code, .internalError)
    }

    func testCallsWaitForAStreamUnderMaxConcurrentStreams() throws {
        let client = GRPCClient(GRPCClient.Settings(authority: "example:50051", userAgent: Array("test".utf8)))
        client.receive(settingsFrame([(SettingID.maxConcurrentStreams.rawValue, 2)]))
        _ = client.connection.takeOutbound()
        let calls = (0..<3).map { _ in client.startCall(path: Health.checkPath, request: []) }
        XCTAssertEqual(calls.map(\.streamID), [1, 3, 0], "the third waits")
        XCTAssertEqual(client.outstanding, 3)
        var server = ScriptedServer()
        let ok = [(":status", "200"), ("content-type", "application/grpc")]
        client.receive(server.headers(1, ok, end: false) + server.message(1, [8, 1]) + server.headers(1, [("grpc-status", "0")], end: true))
        XCTAssertEqual(calls[0].status, GRPCStatus(.ok))
        XCTAssertEqual(calls[2].streamID, 5, "opened once a stream closed")
        XCTAssertEqual(client.connection.activeStreams, 2)
    }

    func testAGoAwayLetsCallsUpToItsLastStreamFinishAndRefusesTheRest() throws {
        let client = readyClient()
        let calls = (0..<3).map { _ in client.startCall(path: Health.checkPath, request: []) }
        var server = ScriptedServer()
        client.receive(Frame(.goAway, streamID: 0, payload: [0, 0, 0, 3, 0, 0, 0, 0]).serialized())
        XCTAssertTrue(client.isDraining)
        XCTAssertNil(calls[0].status)
        XCTAssertNil(calls[1].status)
        XCTAssertEqual(calls[2].status?.code, .unavailable)
        XCTAssertTrue(calls[2].wasNotProcessed, "stream 5 is above the last stream: it may be sent again")
        let later = client.startCall(path: Health.checkPath, request: [])
        XCTAssertTrue(later.wasNotProcessed, "no new stream after GOAWAY")
        let ok = [(":status", "200"), ("content-type", "application/grpc")]
        client.receive(server.headers(3, ok, end: false) + server.message(3, [8, 1]) + server.headers(3, [("grpc-status", "0")], end: true))
        XCTAssertEqual(calls[1].status, GRPCStatus(.ok), "in-flight calls finish on the connection going away")
        XCTAssertFalse(calls[1].wasNotProcessed)
    }

    func testAUnaryResponseIsOneMessage() {
        let ok = [(":status", "200"), ("content-type", "application/grpc")]
        let second = status { $0.headers(1, ok, end: false) + $0.message(1, [8, 1]) + $0.message(1, [8, 1]) }
        XCTAssertEqual(second, GRPCStatus(.internalError, "grpc: cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message"))
        XCTAssertEqual(status { $0.headers(1, ok, end: false) + $0.message(1, [8, 1]) + $0.headers(1, [("grpc-status", "0")], end: true) }, GRPCStatus(.ok))
    }

    func testOnlyTheServersOwnStatusCountsAsItsWord() {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, request: [])
        var server = ScriptedServer()
        client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")], end: true))
        XCTAssertEqual(call.status?.code, .unimplemented)
        XCTAssertEqual(call.status?.fromServer, true)
        let other = readyClient()
        let refused = other.startCall(path: Health.checkPath, request: [])
        var second = ScriptedServer()
        other.receive(second.headers(1, [(":status", "404")], end: true))
        XCTAssertEqual(refused.status?.code, .unimplemented)
        XCTAssertEqual(refused.status?.fromServer, false)
    }

    func testMalformedResponseFieldsFailTheStream() {
        for (name, value, problem) in [
            ("grpc-message", "a\u{1B}[2Jb", "invalid header field value for \"grpc-message\""),
            ("grpc-message", "two\nlines", "invalid header field value for \"grpc-message\""),
            ("X-Upper", "v", "invalid header field name \"X-Upper\""),
            ("bad name", "v", "invalid header field name \"bad name\""),
        ] {
            let client = readyClient()
            let call = client.startCall(path: Health.checkPath, request: [])
            _ = client.connection.takeOutbound()
            var server = ScriptedServer()
            client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc"), (name, value)], end: true))
            XCTAssertEqual(call.status, GRPCStatus(.internalError, problem))
            XCTAssertTrue(frames(client.connection.takeOutbound()).contains { $0.type == FrameType.rstStream.rawValue && $0.payload == [0, 0, 0, 1] })
        }
        XCTAssertNil(HTTP2FieldRules.malformedField([HeaderField(":status", "200"), HeaderField("x-tab", "a\tb")]))
        XCTAssertNotNil(HTTP2FieldRules.malformedField([HeaderField("x", "1"), HeaderField(":status", "200")]))
    }

    /// grpc-go checks every name it holds, the reserved ones too, in the order each first came,
    /// a name's own rule before its values.
    func testEveryMetadataNameIsCheckedInTheOrderItFirstCame() {
        func problem(_ fields: [HeaderField]) -> String? {
            if case .failure(let status) = GRPCClient.metadataHeaders(fields) { return status.message }
            return nil
        }
        let badValue = "header key \"content-type\" contains value with non-printable ASCII characters"
        XCTAssertEqual(problem([HeaderField("content-type", "b\u{1}")]), badValue)
        XCTAssertEqual(problem([HeaderField("Content-Type", "b\u{1}"), HeaderField("", "v")]), badValue)
        XCTAssertEqual(problem([HeaderField("", "v"), HeaderField("content-type", "b\u{1}")]), "there is an empty key in the header")
        XCTAssertEqual(problem([HeaderField("a", "ok"), HeaderField("b c", "v"), HeaderField("a", "\u{7F}")]),
                       "header key \"a\" contains value with non-printable ASCII characters", "a came first; its values count together")
        XCTAssertEqual(problem([HeaderField("te", "x\u{7F}"), HeaderField("x-bin", "\u{0}")]),
                       "header key \"te\" contains value with non-printable ASCII characters")
        XCTAssertNil(problem([HeaderField("x-bin", "\u{0}"), HeaderField("content-type", "application/grpc")]))
    }

    func testReservedMetadataIsLeftOutAsGRPCGoLeavesItOut() throws {
        let given = [HeaderField("te", "gzip"), HeaderField("Content-Type", "text/plain"), HeaderField("grpc-timeout", "1S"),
                     HeaderField("user-agent", "x"), HeaderField("grpc-status", "0"), HeaderField("x-kept", "yes"),
                     HeaderField("x-data-bin", "\u{0}\u{1}hi")]
        guard case .success(let fields) = GRPCClient.metadataHeaders(given) else { return XCTFail() }
        XCTAssertEqual(fields, [HeaderField("x-kept", "yes"), HeaderField("x-data-bin", "AAFoaQ")])
        guard case .failure(let space) = GRPCClient.metadataHeaders([HeaderField("x y", "v")]) else { return XCTFail() }
        XCTAssertEqual(space, GRPCStatus(.internalError, "header key \"x y\" contains illegal characters not in [0-9a-z-_.]"))
        guard case .failure(let value) = GRPCClient.metadataHeaders([HeaderField("x-v", "caf\u{E9}")]) else { return XCTFail() }
        XCTAssertEqual(value, GRPCStatus(.internalError, "header key \"x-v\" contains value with non-printable ASCII characters"))
        XCTAssertEqual(base64(Array("f".utf8)), "Zg")
        XCTAssertEqual(base64(Array("fo".utf8)), "Zm8")
        XCTAssertEqual(base64(Array("foo".utf8)), "Zm9v")
        XCTAssertEqual(base64(Array("foobar".utf8)), "Zm9vYmFy")
    }

    func testServerStreamingDeliversEachMessageAsItArrives() throws {
        let client = readyClient()
        let call = client.startCall(path: Health.watchPath, serverStreaming: true, request: Health.request(service: ""))
        var server = ScriptedServer()
        client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc")], end: false))
        // One message split across two DATA frames, then two in one frame.
        let first = server.message(1, [0x08, 0x02])
        client.receive(Array(first.prefix(12)))
        XCTAssertTrue(call.messages.isEmpty, "a partial message is not delivered")
        client.receive(Array(first.dropFirst(12)))
        XCTAssertEqual(try Health.decodeResponse(try XCTUnwrap(call.nextMessage())), .notServing)
        client.receive(server.message(1, [0x08, 0x01]) + server.message(1, [0x08, 0x03]))
        XCTAssertEqual(try call.messages.map { try Health.decodeResponse($0) }, [.serving, .serviceUnknown])
        XCTAssertNil(call.status, "the stream stays open until trailers")
        client.receive(server.headers(1, [("grpc-status", "0")], end: true))
        XCTAssertEqual(call.status, GRPCStatus(.ok))
    }

    func testLongStreamsKeepTheReceiveWindowOpen() throws {
        let client = readyClient()
        _ = client.startCall(path: Health.watchPath, serverStreaming: true, request: [])
        _ = client.connection.takeOutbound()
        var server = ScriptedServer()
        client.receive(server.headers(1, [(":status", "200"), ("content-type", "application/grpc")], end: false))
        let window = client.settings.limits.receiveWindow
        // Past half the window, the client returns what it consumed, for the stream and the connection.
        for _ in 0..<(window / 2 / 16_000 + 1) {
            client.receive(server.message(1, [UInt8](repeating: 0, count: 16_000 - 5)))
        }
        let updates = frames(client.connection.takeOutbound()).filter { $0.type == FrameType.windowUpdate.rawValue }
        XCTAssertEqual(Set(updates.map(\.streamID)), [0, 1])
    }

    func testCompressedRequestRoundTrips() throws {
        let client = readyClient()
        _ = client.startCall(path: Health.checkPath, compress: true, request: Health.request(service: "svc"))
        let sent = frames(client.connection.takeOutbound())
        XCTAssertEqual(sent[1].payload[0], 1)
        XCTAssertEqual(try Gzip.decompress(Array(sent[1].payload.dropFirst(5)), limit: 100), Health.request(service: "svc"))
    }

    func testInvalidMetadataNameFailsTheCall() {
        let client = readyClient()
        let call = client.startCall(path: Health.checkPath, metadata: [HeaderField("bad key", "v")], request: [])
        XCTAssertEqual(call.status?.code, .internalError)
        XCTAssertEqual(call.status?.message, "header key \"bad key\" contains illegal characters not in [0-9a-z-_.]")
    }
}

final class WireFormatTests: XCTestCase {
    func testProtobufVarintsAndStrings() throws {
        var w = ProtobufWriter()
        w.uint(1, 150)
        XCTAssertEqual(w.bytes, [0x08, 0x96, 0x01])
        XCTAssertEqual(Health.request(service: "testing"), [0x0A, 0x07] + Array("testing".utf8))
        XCTAssertEqual(Health.request(service: ""), [])
        var r = ProtobufReader([0x08, 0x96, 0x01, 0x12, 0x01, 0x41, 0x1D, 1, 2, 3, 4, 0x09, 1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(try r.next()?.scalar, 150)
        XCTAssertEqual(try r.next().map { Array($0.bytes) }, [0x41])
        XCTAssertEqual(try r.next()?.scalar, 0x0403_0201)
        XCTAssertEqual(try r.next()?.scalar, 0x0807_0605_0403_0201)
        XCTAssertNil(try r.next())
    }

    func testProtobufRejectsMalformedInput() {
        XCTAssertThrowsError(try Health.decodeResponse([0x08])) { XCTAssertEqual($0 as? ProtobufError, .truncated) }
        XCTAssertThrowsError(try Health.decodeResponse([0x12, 0x05, 0x41])) { XCTAssertEqual($0 as? ProtobufError, .truncated) }
        XCTAssertThrowsError(try Health.decodeResponse([0x0B])) { XCTAssertEqual($0 as? ProtobufError, .truncated) }
        XCTAssertThrowsError(try Health.decodeResponse([0x0B, 0x14])) { XCTAssertEqual($0 as? ProtobufError, .unmatchedEndGroup) }
        XCTAssertThrowsError(try Health.decodeResponse([0x0C])) { XCTAssertEqual($0 as? ProtobufError, .unmatchedEndGroup) }
        XCTAssertThrowsError(try Health.decodeResponse([0x0E])) { XCTAssertEqual($0 as? ProtobufError, .unsupportedWireType(6)) }
        let deep = [UInt8](repeating: 0x0B, count: 200) + [UInt8](repeating: 0x0C, count: 200)
        XCTAssertThrowsError(try Health.decodeResponse(deep)) { XCTAssertEqual($0 as? ProtobufError, .nestedTooDeep) }
        XCTAssertThrowsError(try Health.decodeResponse([0x08] + [UInt8](repeating: 0xFF, count: 10) + [0x01])) { XCTAssertEqual($0 as? ProtobufError, .malformedVarint) }
        XCTAssertThrowsError(try Health.decodeResponse([0x00])) { XCTAssertEqual($0 as? ProtobufError, .invalidFieldNumber) }
    }

    func testHealthResponseSkipsUnknownFieldsAndNamesStatuses() throws {
        XCTAssertEqual(try Health.decodeResponse([0x12, 0x02, 0x41, 0x42, 0x08, 0x02]), .notServing)
        XCTAssertEqual(try Health.decodeResponse([]), .unknown)
        XCTAssertEqual(Health.ServingStatus.serviceUnknown.description, "SERVICE_UNKNOWN")
        XCTAssertEqual(try Health.decodeResponse([0x08, 0x07]).description, "7")
        // A group (field 5, holding a varint and a nested group) is skipped as protobuf skips it.
        XCTAssertEqual(try Health.decodeResponse([0x2B, 0x08, 0x07, 0x33, 0x34, 0x2C, 0x08, 0x01]), .serving)
        // An enum is an int32: -1 comes sign-extended to ten bytes and prints as -1.
        XCTAssertEqual(try Health.decodeResponse([0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01]).description, "-1")
    }

    func testGRPCTimeoutAndPercentDecoding() {
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 1_000_000_000), "1000000u")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 50), "50n")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 3_600_000_000_000 * 30), "108000S")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 0), "0n")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: Int64.max), "2562048H")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 100_000_001), "100001u")
        XCTAssertEqual(percentDecode("a%20b%zz%4"), "a b%zz%4")
    }

    /// grpc-timeout at the ends of the range: 8 digits at most, rounded up to the unit without
    /// an addition that could pass Int64.max, and a header's value scaled without a trap.
    func testGRPCTimeoutAtTheEndsOfTheRange() {
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 1), "1n")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 99_999_999), "99999999n")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: 100_000_000), "100000u")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: Int64.max - 1), "2562048H")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: -1), "0n")
        XCTAssertEqual(encodeGRPCTimeout(nanoseconds: Int64.min), "0n")
        for n in [Int64.max, Int64.max - 1, 359_999_999_999_999_999, 99_999_999_999_999_999] {
            let text = encodeGRPCTimeout(nanoseconds: n)
            XCTAssertLessThanOrEqual(text.count, 9, text)
            XCTAssertGreaterThanOrEqual(decodeGRPCTimeout(text)!, n, "never shorter than asked: \(text)")
        }
        XCTAssertEqual(decodeGRPCTimeout("99999999H"), Int64.max, "past the range: held at its end")
        XCTAssertEqual(decodeGRPCTimeout("2562047H"), 2_562_047 * 3_600_000_000_000)
        XCTAssertEqual(decodeGRPCTimeout("2562048H"), Int64.max)
        XCTAssertEqual(decodeGRPCTimeout("99999999n"), 99_999_999)
        XCTAssertEqual(decodeGRPCTimeout("0n"), 0)
        for bad in ["-1n", "100000000n", "1", "n", "1x", "", "9223372036854775807n", "-99999999H"] {
            XCTAssertNil(decodeGRPCTimeout(bad), bad)
        }
    }

    func testGzipBoundsDecompressedSize() throws {
        let big = try Gzip.compress([UInt8](repeating: 0, count: 1 << 20))
        XCTAssertLessThan(big.count, 2048)
        XCTAssertThrowsError(try Gzip.decompress(big, limit: 4096)) { XCTAssertEqual($0 as? Gzip.Failure, .tooLarge(limit: 4096)) }
        XCTAssertThrowsError(try Gzip.decompress([1, 2, 3], limit: 4096))
        XCTAssertThrowsError(try Gzip.decompress(Array(big.prefix(10)), limit: 1 << 21))
    }

    func testGzipReadsEveryMemberAndRefusesTrailingBytes() throws {
        let first = try Gzip.compress(Array("grpc-".utf8))
        let second = try Gzip.compress(Array("init".utf8))
        XCTAssertEqual(try Gzip.decompress(first + second, limit: 64), Array("grpc-init".utf8))
        XCTAssertThrowsError(try Gzip.decompress(first + Array("junk".utf8), limit: 64)) {
            guard case .zlib? = $0 as? Gzip.Failure else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try Gzip.decompress(first + second.prefix(second.count - 3), limit: 64))
        // The limit holds across members.
        XCTAssertThrowsError(try Gzip.decompress(first + second, limit: 6)) { XCTAssertEqual($0 as? Gzip.Failure, .tooLarge(limit: 6)) }
    }
}
