import Glibc
import XCTest
@testable import Transport

/// Unix socket addresses come from one builder (cshim_unix_address), which the supervisor's
/// sockets use too: what fits is the same on both sides.
final class UnixAddressTests: XCTestCase {
    private var pathCapacity: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) }

    func testAPathEndsWithItsNULInsideTheAddress() throws {
        let longest = String(repeating: "p", count: pathCapacity - 1)
        let address = try XCTUnwrap(SocketAddress.unix(longest, abstract: false))
        XCTAssertEqual(address.bytes.count, MemoryLayout<sa_family_t>.size + pathCapacity)
        XCTAssertEqual(address.bytes.last, 0)
        XCTAssertNil(SocketAddress.unix(longest + "p", abstract: false))
    }

    func testAnAbstractNameMayFillTheAddressAfterItsNUL() throws {
        let longest = String(repeating: "a", count: pathCapacity - 1)
        let address = try XCTUnwrap(SocketAddress.unix(longest, abstract: true))
        XCTAssertEqual(address.bytes.count, MemoryLayout<sa_family_t>.size + pathCapacity)
        XCTAssertEqual(address.description, "@" + longest)
        XCTAssertNil(SocketAddress.unix(longest + "a", abstract: true))
    }

    func testAnEmptyNameIsRefused() {
        XCTAssertNil(SocketAddress.unix("", abstract: false))
        XCTAssertNil(SocketAddress.unix("", abstract: true))
    }
}
