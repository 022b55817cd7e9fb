import GateProtocol
import HPACK
import Wire
import XCTest

/// The server's side of gRPC framing: one request message in, messages and trailers out.
final class GRPCServerCallTests: XCTestCase {
    func testOneUncompressedMessageIsTheRequest() {
        let message = Health.request(service: "db")
        XCTAssertEqual(try GRPCServerCall.request(from: GRPCServerCall.message(message)).get(), message)
        XCTAssertEqual(try GRPCServerCall.request(from: GRPCServerCall.message([])).get(), [])
    }

    func testEveryOtherBodyIsRefusedWithAStatus() {
        let message = GRPCServerCall.message(Health.request(service: "db"))
        let cases: [([UInt8], GRPCStatusCode)] = [
            ([], .internalError), ([0, 0, 0], .internalError),
            ([1] + message.dropFirst(), .unimplemented),
            (message.dropLast(), .internalError),
            (message + message, .internalError),
            ([0, 0xFF, 0xFF, 0xFF, 0xFF], .resourceExhausted),
        ]
        for (body, code) in cases {
            guard case .failure(let status) = GRPCServerCall.request(from: body, maxMessageSize: 1 << 10) else {
                return XCTFail("\(body) was taken")
            }
            XCTAssertEqual(status.code, code, "\(body): \(status)")
        }
    }

    func testTrailersCarryTheStatusPercentEncoded() {
        XCTAssertEqual(GRPCServerCall.trailers(GRPCStatus(.ok)), [HeaderField("grpc-status", "0")])
        XCTAssertEqual(GRPCServerCall.trailers(GRPCStatus(.unavailable, "50% gone\u{7}é")),
                       [HeaderField("grpc-status", "14"), HeaderField("grpc-message", "50%25 gone\\x07%C3%A9")])
        XCTAssertEqual(percentDecode(GRPCServerCall.percentEncoded("a%b\r\nc")), "a%b\r\nc")
        let only = GRPCServerCall.trailersOnly(GRPCStatus(rawCode: 99, message: ""))
        XCTAssertEqual(only, [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc"), HeaderField("grpc-status", "99")])
    }

    /// Every byte string either is one request or is refused: never a trap, whatever the length
    /// prefix says.
    func testArbitraryBodiesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0..<24, using: &generator)
            var body = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count >= 5 && Bool.random(using: &generator) { body[0] = 0 }
            switch GRPCServerCall.request(from: body, maxMessageSize: 16) {
            case .success(let message): XCTAssertEqual(GRPCServerCall.message(message), body)
            case .failure(let status): XCTAssertNotEqual(status.code, .ok)
            }
        }
    }
}
