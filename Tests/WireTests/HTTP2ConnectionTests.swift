import XCTest
import HPACK
@testable import Wire

/// Splits the client's outbound bytes into frames (after the preface, when present).
func frames(_ bytes: [UInt8]) -> [Frame] {
    var data = bytes
    if data.starts(with: HTTP2Connection.preface) { data.removeFirst(HTTP2Connection.preface.count) }
    var out: [Frame] = []
    var offset = 0
    while let (frame, used) = try! Frame.parse(data, from: offset, maxFrameSize: 1 << 24) {
        out.append(frame)
        offset += used
    }
    XCTAssertEqual(offset, data.count, "trailing partial frame")
    return out
}

func settingsFrame(_ pairs: [(UInt16, UInt32)] = []) -> [UInt8] {
    var payload: [UInt8] = []
    for (id, value) in pairs {
        payload += [UInt8(id >> 8), UInt8(id & 0xFF)]
        appendUInt32(value, to: &payload)
    }
    return Frame(.settings, streamID: 0, payload: payload).serialized()
}

final class FrameTests: XCTestCase {
    func testRoundTripAndPartialInput() throws {
        let f = Frame(.headers, flags: FrameFlags.endHeaders, streamID: 3, payload: [1, 2, 3])
        let bytes = f.serialized()
        XCTAssertEqual(bytes, [0, 0, 3, 1, 4, 0, 0, 0, 3, 1, 2, 3])
        XCTAssertNil(try Frame.parse(Array(bytes.dropLast()), from: 0, maxFrameSize: 16384))
        let (parsed, used) = try XCTUnwrap(try Frame.parse(bytes, from: 0, maxFrameSize: 16384))
        XCTAssertEqual(parsed, f)
        XCTAssertEqual(used, 12)
    }

    func testRejectsOversizedFrameFromItsHeaderAlone() {
        let header: [UInt8] = [0x01, 0x00, 0x00, 0, 0, 0, 0, 0, 1]
        XCTAssertThrowsError(try Frame.parse(header, from: 0, maxFrameSize: 16384)) {
            guard case .connection(.frameSizeError, _)? = $0 as? HTTP2Error else { return XCTFail("\($0)") }
        }
    }
}

final class HTTP2ConnectionTests: XCTestCase {
    func testTheFirstFrameMustBeSettingsWhateverItsLength() {
        // An SSH banner read as a frame header claims 5 MiB; it is named as a wrong preface.
        let c = HTTP2Connection()
        XCTAssertThrowsError(try c.receive(Array("SSH-2.0-OpenSSH_9.2\r\n".utf8))) {
            XCTAssertEqual($0 as? HTTP2Error, .connection(.protocolError, "server preface must start with SETTINGS, got frame type 45"))
        }
    }

    func testPriorityFramesAreChecked() throws {
        for (stream, payload, expected) in [(UInt32(1), [UInt8](repeating: 0, count: 4), HTTP2Error.connection(.frameSizeError, "PRIORITY frame of 4 bytes (want 5)")),
                                            (0, [0, 0, 0, 0, 16], .connection(.protocolError, "PRIORITY on stream 0"))] {
            let c = HTTP2Connection()
            _ = try c.receive(settingsFrame())
            _ = c.openStream(headers: [HeaderField(":method", "POST")], endStream: false)
            XCTAssertThrowsError(try c.receive(Frame(.priority, streamID: stream, payload: payload).serialized())) {
                XCTAssertEqual($0 as? HTTP2Error, expected)
            }
        }
        let c = HTTP2Connection()
        _ = try c.receive(settingsFrame())
        _ = c.openStream(headers: [HeaderField(":method", "POST")], endStream: false)
        XCTAssertEqual(try c.receive(Frame(.priority, streamID: 1, payload: [0, 0, 0, 0, 16]).serialized()), [])
    }

    func testStartsWithPrefaceSettingsAndWindowUpdate() {
        let c = HTTP2Connection()
        let out = c.takeOutbound()
        XCTAssertTrue(out.starts(with: HTTP2Connection.preface))
        let f = frames(out)
        XCTAssertEqual(f.map(\.type), [FrameType.settings.rawValue, FrameType.windowUpdate.rawValue])
        XCTAssertEqual(f[0].payload.count % 6, 0)
        XCTAssertFalse(c.hasOutbound)
    }

    func testServerSettingsMakeItReadyAndAreAcknowledged() throws {
        let c = HTTP2Connection()
        _ = c.takeOutbound()
        XCTAssertEqual(try c.receive(Array(settingsFrame([(4, 1000)]).prefix(5))), [])
        XCTAssertFalse(c.isReady)
        XCTAssertEqual(try c.receive(Array(settingsFrame([(4, 1000)]).dropFirst(5))), [.ready])
        XCTAssertTrue(c.isReady)
        let acks = frames(c.takeOutbound())
        XCTAssertEqual(acks, [Frame(.settings, flags: FrameFlags.ack, streamID: 0)])
    }

    func testPingIsAnsweredWithTheSamePayload() throws {
        let c = HTTP2Connection()
        _ = try c.receive(settingsFrame())
        _ = c.takeOutbound()
        _ = try c.receive(Frame(.ping, streamID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8]).serialized())
        XCTAssertEqual(frames(c.takeOutbound()), [Frame(.ping, flags: FrameFlags.ack, streamID: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])])
    }

    func testFirstFrameMustBeSettings() {
        let c = HTTP2Connection()
        XCTAssertThrowsError(try c.receive(Frame(.ping, streamID: 0, payload: [UInt8](repeating: 0, count: 8)).serialized()))
        XCTAssertTrue(frames(c.takeOutbound()).contains { $0.type == FrameType.goAway.rawValue }, "GOAWAY sent on a connection error")
    }

    func testDataWaitsForTheFlowControlWindow() throws {
        let c = HTTP2Connection()
        _ = try c.receive(settingsFrame([(4, 10)]))  // peer's initial stream window: 10 bytes
        _ = c.takeOutbound()
        let id = c.openStream(headers: [HeaderField(":method", "POST")], endStream: false)
        c.sendData(streamID: id, [UInt8](repeating: 7, count: 25), endStream: true)
        var data = frames(c.takeOutbound()).filter { $0.type == FrameType.data.rawValue }
        XCTAssertEqual(data.map(\.payload.count), [10])
        XCTAssertFalse(data[0].has(FrameFlags.endStream))
        var update: [UInt8] = []
        appendUInt32(100, to: &update)
        _ = try c.receive(Frame(.windowUpdate, streamID: id, payload: update).serialized())
        data = frames(c.takeOutbound()).filter { $0.type == FrameType.data.rawValue }
        XCTAssertEqual(data.map(\.payload.count), [15])
        XCTAssertTrue(data[0].has(FrameFlags.endStream))
    }

    func testHeadersAcrossContinuationAndPaddedData() throws {
        let c = HTTP2Connection()
        _ = try c.receive(settingsFrame())
        let id = c.openStream(headers: [HeaderField(":method", "POST")], endStream: true)
        var encoder = HPACKEncoder()
        let block = encoder.encode([HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")])
        var bytes = Frame(.headers, flags: FrameFlags.padded, streamID: id, payload: [2] + Array(block.prefix(3)) + [0, 0]).serialized()
        bytes += Frame(.continuation, flags: FrameFlags.endHeaders, streamID: id, payload: Array(block.dropFirst(3))).serialized()
        bytes += Frame(.data, flags: FrameFlags.padded | FrameFlags.endStream, streamID: id, payload: [1, 9, 9, 0]).serialized()
        let events = try c.receive(bytes)
        XCTAssertEqual(events, [
            .headers(streamID: id, fields: [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")], endStream: false),
            .data(streamID: id, bytes: [9, 9], endStream: true),
        ])
    }

    func testProtocolViolations() throws {
        func violates(_ frame: Frame, file: StaticString = #filePath, line: UInt = #line) throws {
            let c = HTTP2Connection()
            _ = try c.receive(settingsFrame())
            _ = c.openStream(headers: [HeaderField(":method", "POST")], endStream: true)
            XCTAssertThrowsError(try c.receive(frame.serialized()), file: file, line: line)
        }
        try violates(Frame(.pushPromise, flags: FrameFlags.endHeaders, streamID: 1, payload: [0, 0, 0, 2]))
        try violates(Frame(.data, streamID: 3, payload: [1]))  // never opened
        try violates(Frame(.data, streamID: 2, payload: [1]))  // server-initiated
        try violates(Frame(.continuation, flags: FrameFlags.endHeaders, streamID: 1))
        try violates(Frame(.settings, streamID: 0, payload: [0, 5, 0, 0, 0, 1]))  // MAX_FRAME_SIZE 1
        try violates(Frame(.ping, streamID: 0, payload: [1]))
        try violates(Frame(.windowUpdate, streamID: 0, payload: [0, 0, 0, 0]))
        try violates(Frame(.headers, flags: FrameFlags.endHeaders, streamID: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))
    }

    func testResetAndGoAwayAreEvents() throws {
        let c = HTTP2Connection()
        _ = try c.receive(settingsFrame())
        let id = c.openStream(headers: [HeaderField(":method", "POST")], endStream: true)
        XCTAssertEqual(try c.receive(Frame(.rstStream, streamID: id, payload: [0, 0, 0, 8]).serialized()), [.reset(streamID: id, code: .cancel)])
        XCTAssertEqual(try c.receive(Frame(.goAway, streamID: 0, payload: [0, 0, 0, 1, 0, 0, 0, 0] + Array("bye".utf8)).serialized()),
                       [.goAway(lastStreamID: 1, code: .noError, debug: "bye")])
    }
}
