#if TLS
import Foundation
import TestSupport
import XCTest
@testable import Transport
import SystemCalls
import Glibc

/// TLS connections made one after another in one process, against OpenSSL's own test server:
/// what one connection learnt must not colour the next (a long-lived process makes many).
final class TLSConnectionTests: XCTestCase {
    var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                     "-keyout", path("key.pem"), "-out", path("cert.pem"), "-subj", "/CN=localhost",
                                     "-addext", "subjectAltName=DNS:localhost", "-days", "1"])
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: work)
    }

    func path(_ name: String) -> String { work.appendingPathComponent(name).path }

    func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(tool) \(arguments)")
    }

    /// `openssl s_server` on a free port (with `-Verify 1`: it asks for a client certificate and
    /// refuses a connection without one); returns the process and its port.
    func server(askingForCertificate: Bool) throws -> (Process, UInt16) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "0", "-cert", path("cert.pem"), "-key", path("key.pem"), "-alpn", "h2", "-www"]
            + (askingForCertificate ? ["-Verify", "1", "-CAfile", path("cert.pem")] : [])
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = Pipe()
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = readUntil(output.fileHandleForReading.fileDescriptor, "ACCEPT", within: 10)
        let line = text.split(separator: "\n").first { $0.hasPrefix("ACCEPT") } ?? ""
        return (process, UInt16(line.split(separator: ":").last ?? "") ?? 0)
    }

    /// Connects, completes the handshake and reads once the server has had its say; returns
    /// whether the server asked for a certificate and what the read ended with.
    func outcome(_ context: TLSContext, port: UInt16) throws -> (asked: Bool, failure: StreamFailure?) {
        let deadline = Deadline.after(5_000_000_000)
        let address = try XCTUnwrap(SocketAddress.literal("127.0.0.1", port: port))
        let (socket, connected) = try Socket.startConnect(to: address)
        if !connected {
            var pfd = pollfd(fd: socket.fd, events: Int16(POLLOUT), revents: 0)
            XCTAssertEqual(poll(&pfd, 1, 5000), 1)
            try socket.finishConnect()
        }
        let connection = try TLSConnection.start(over: socket, context: context, host: "localhost")
        // The handshake, step by step as a reactor would drive it.
        while let events = try connection.continueHandshake(), !deadline.hasPassed {
            var pfd = pollfd(fd: connection.fd, events: events, revents: 0)
            _ = poll(&pfd, 1, 1000)
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var failure: StreamFailure? = nil
        // A TLS 1.3 server refuses a missing certificate after the client's handshake is done:
        // its alert arrives with the first read.
        reading: while !deadline.hasPassed {
            switch buffer.withUnsafeMutableBytes({ connection.read(into: $0) }) {
            case .failed(let reason):
                failure = reason
                break reading
            case .endOfStream:
                break reading
            case .wouldBlock, .bytes:
                var pfd = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 200) == 0 { break reading }  // the server said nothing more
            }
        }
        return (connection.certificateWasRequested, failure)
    }

    func testASecondConnectionIsNotDescribedAsTheFirst() throws {
        var configuration = TLSConfiguration()
        configuration.caFile = path("cert.pem")
        let context = try TLSContext(configuration)
        let (asking, askingPort) = try server(askingForCertificate: true)
        let (plain, plainPort) = try server(askingForCertificate: false)
        defer {
            asking.terminate()
            plain.terminate()
        }
        let first = try outcome(context, port: askingPort)
        XCTAssertTrue(first.asked)
        XCTAssertEqual(first.failure?.description, "remote error: tls: certificate required")
        XCTAssertFalse(try outcome(context, port: plainPort).asked, "the second server never asked for a certificate")
        XCTAssertFalse(try outcome(TLSContext(configuration), port: plainPort).asked, "nor with a context of its own")
    }
}
#endif
