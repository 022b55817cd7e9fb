import GateProtocol
import Addressing
import Foundation
import TestSupport
import XCTest
@testable import Client
import SystemCalls
import Transport
import Wire

/// The client runtime for a process that lives: many Checks over one connection against a
/// grpc-go server that sends GOAWAY when a connection reaches its maximum age. Every call ends
/// SERVING (none lost, none past its deadline), and the channel reconnects.
final class ChannelTests: XCTestCase {
    /// The test command builds it (scripts/install-deps.sh).
    static let goServer = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../.build/peers/goserver").standardizedFileURL.path

    var server: Process?

    override func tearDown() {
        server?.terminate()
        server?.waitUntilExit()
    }

    static let rawPeer = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../peers/rawpeer.py").standardizedFileURL.path

    /// Starts the grpc-go server with `arguments` (or, with `rawMode`, the hand-written peer in
    /// that mode); returns its port.
    func startServer(_ arguments: [String], rawMode: String? = nil) throws -> UInt16 {
        let process = Process()
        if let rawMode {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", ChannelTests.rawPeer, "--mode", rawMode]
        } else {
            XCTAssertTrue(FileManager.default.isExecutableFile(atPath: ChannelTests.goServer), "\(ChannelTests.goServer) is missing")
            process.executableURL = URL(fileURLWithPath: ChannelTests.goServer)
            process.arguments = ["-addr", "127.0.0.1:0"] + arguments
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        server = process
        let text = readUntil(output.fileHandleForReading.fileDescriptor, "\n", within: 10)
        let line = try XCTUnwrap(text.split(separator: "\n").first, "the server did not start")
        return try XCTUnwrap(UInt16(line.split(whereSeparator: { $0 == ":" || $0 == " " }).last ?? ""))
    }

    func channel(_ port: UInt16) -> Channel {
        Channel(target: .tcp(host: "127.0.0.1", port: port), security: .plaintext, userAgent: Array("grpc-init-tests".utf8), connectTimeout: 1_000_000_000)
    }

    /// The channel's turns on a reactor of the test's own, until `finished` or the time is up.
    func drive(_ channel: Channel, until finished: () -> Bool, within nanoseconds: Int64) -> Reactor.Outcome {
        let reactor = Reactor()
        reactor.add(channel)
        return reactor.run(until: finished, deadline: MonotonicClock.deadline(after: nanoseconds))
    }

    func serving(_ handle: Channel.CallHandle) throws -> Health.ServingStatus? {
        guard handle.status?.code == .ok, let message = handle.messages.first else { return nil }
        return try Health.decodeResponse(message)
    }

    func testAThousandChecksInTurnAcrossGoAways() throws {
        let port = try startServer(["-max-connection-age", "100ms"])
        let channel = channel(port)
        let start = Date()
        var failures: [String] = []
        for _ in 0..<1000 {
            let handle = channel.start(path: Health.checkPath, request: Health.request(service: ""), timeout: 2_000_000_000)
            _ = drive(channel, until: { handle.status != nil }, within: 3_000_000_000)
            if try serving(handle) != .serving { failures.append(handle.status.map(\.description) ?? "no status") }
            // Keep the run going long enough for several GOAWAYs.
            if channel.dials < 3 && Date().timeIntervalSince(start) < 5 { usleep(200) }
        }
        XCTAssertEqual(failures, [])
        XCTAssertGreaterThanOrEqual(channel.dials, 2, "the server's GOAWAY made the channel reconnect")
    }

    func testAHundredConcurrentChecksWithinTheStreamLimitAcrossAGoAway() throws {
        // Each Check takes 20 ms, at most 10 streams at once, and connections go away after 60 ms:
        // the calls queue for streams, and several GOAWAYs come while calls are in flight.
        let port = try startServer(["-delay", "20ms", "-max-concurrent-streams", "10", "-max-connection-age", "60ms"])
        let channel = channel(port)
        let handles = (0..<100).map { _ in
            channel.start(path: Health.checkPath, request: Health.request(service: ""), timeout: 5_000_000_000)
        }
        let outcome = drive(channel, until: { handles.allSatisfy { $0.status != nil } }, within: 10_000_000_000)
        XCTAssertEqual(outcome, .done)
        let statuses = try handles.map { try serving($0)?.description ?? $0.status?.description ?? "none" }
        XCTAssertEqual(statuses, Array(repeating: "SERVING", count: 100))
        XCTAssertGreaterThanOrEqual(channel.dials, 2, "GOAWAY came while calls were in flight")
        XCTAssertLessThanOrEqual(channel.peakStreams, 10, "never more streams than the server allows")
        XCTAssertGreaterThan(channel.peakStreams, 1, "calls ran side by side")
    }

    func testACallEndsAtItsOwnDeadline() throws {
        // A server that never answers, and does not keep grpc-timeout either: the deadlines are ours.
        let port = try startServer([], rawMode: "stall-rpc")
        let channel = channel(port)
        let slow = channel.start(path: Health.checkPath, request: Health.request(service: ""), timeout: 100_000_000)
        let slower = channel.start(path: Health.checkPath, request: Health.request(service: ""), timeout: 300_000_000)
        let start = MonotonicClock.now()
        _ = drive(channel, until: { slow.status != nil }, within: 5_000_000_000)
        XCTAssertEqual(slow.status?.code, .deadlineExceeded)
        XCTAssertNil(slower.status, "the other call goes on")
        _ = drive(channel, until: { slower.status != nil }, within: 5_000_000_000)
        XCTAssertEqual(slower.status?.code, .deadlineExceeded)
        let took = Double(MonotonicClock.now() - start) / 1e9
        XCTAssertLessThan(took, 0.6, "each ended at its own deadline")
    }
}
