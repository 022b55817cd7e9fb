import GateProtocol
import Wire
import XCTest

/// gRFC A90's List: HealthListResponse { map<string, HealthCheckResponse> statuses = 1; }, each
/// map entry a message with key = 1 and value = 2.
final class HealthListTests: XCTestCase {
    func testTheRequestIsEmpty() {
        XCTAssertEqual(Health.listRequest, [])
        XCTAssertEqual(Health.listPath, "/grpc.health.v1.Health/List")
    }

    func testAnEntryIsAKeyAndAHealthCheckResponse() throws {
        // As protobuf writes {"db": SERVING, "": NOT_SERVING}: key and value in each entry.
        let bytes: [UInt8] = [0x0a, 0x08, 0x0a, 0x02, 0x64, 0x62, 0x12, 0x02, 0x08, 0x01,
                              0x0a, 0x06, 0x0a, 0x00, 0x12, 0x02, 0x08, 0x02]
        let listed = try Health.decodeListResponse(bytes)
        XCTAssertEqual(listed.map(\.service), ["", "db"], "sorted by name")
        XCTAssertEqual(listed.map(\.status), [.notServing, .serving])
        XCTAssertEqual(Health.listResponse([("db", .serving)]), Array(bytes[0..<10]))
        let round = try Health.decodeListResponse(Health.listResponse([("b", .notServing), ("a", .serving), ("", .unknown)]))
        XCTAssertEqual(round.map(\.service), ["", "a", "b"])
        XCTAssertEqual(round.map(\.status), [.unknown, .serving, .notServing])
    }

    func testMissingPartsAreDefaultsAndTheLastOfARepeatedKeyHolds() throws {
        // An entry without a value, one without a key, "x" twice.
        let bytes: [UInt8] = [0x0a, 0x03, 0x0a, 0x01, 0x61,
                              0x0a, 0x04, 0x12, 0x02, 0x08, 0x01,
                              0x0a, 0x07, 0x0a, 0x01, 0x78, 0x12, 0x02, 0x08, 0x01,
                              0x0a, 0x07, 0x0a, 0x01, 0x78, 0x12, 0x02, 0x08, 0x02,
                              0x10, 0x05]  // an unknown field, skipped
        let listed = try Health.decodeListResponse(bytes)
        XCTAssertEqual(listed.map(\.service), ["", "a", "x"])
        XCTAssertEqual(listed.map(\.status), [.serving, .unknown, .notServing])
        XCTAssertEqual(try Health.decodeListResponse([]).count, 0, "an empty map")
    }

    func testNamesAreKeptAsSentControlCharactersIncluded() throws {
        let name = "evil\n[grpc-init] ready: \u{1b}[31m"
        let listed = try Health.decodeListResponse(Health.listResponse([(name, .serving)]))
        XCTAssertEqual(listed.first?.service, name, "escaped where it is written, not here")
    }

    func testMoreThanAHundredServicesAreRefusedNotCut() throws {
        let hundred = (0..<100).map { (service: "s\($0)", status: ServingStatus.serving) }
        XCTAssertEqual(try Health.decodeListResponse(Health.listResponse(hundred)).count, 100)
        let more = hundred + [("s100", .serving)]
        XCTAssertThrowsError(try Health.decodeListResponse(Health.listResponse(more))) { error in
            XCTAssertEqual(error as? Health.ListFailure, .tooMany(101))
            XCTAssertEqual("\(error)", "the server listed 101 services, more than 100")
        }
    }

    func testABrokenMessageIsUndecodable() {
        XCTAssertThrowsError(try Health.decodeListResponse([0x0a, 0x08, 0x0a])) { error in
            XCTAssertEqual(error as? Health.ListFailure, .undecodable(.truncated))
        }
        XCTAssertThrowsError(try Health.decodeListResponse([0x0a, 0x02, 0x12, 0x05])) { error in
            XCTAssertEqual(error as? Health.ListFailure, .undecodable(.truncated))
        }
    }
}
