import Addressing
@testable import SPIFFE
import Transport
import Wire
import XCTest

final class WorkloadAPITests: XCTestCase {
    func testEndpointForms() throws {
        XCTAssertEqual(try WorkloadAPI.endpoint("unix:///run/spire/agent.sock"), .unix(path: "/run/spire/agent.sock"))
        XCTAssertEqual(try WorkloadAPI.endpoint("unix:/run/spire/agent.sock"), .unix(path: "/run/spire/agent.sock"))
        XCTAssertEqual(try WorkloadAPI.endpoint("tcp://127.0.0.1:8081"), .tcp(host: "127.0.0.1", port: 8081))
        XCTAssertEqual(try WorkloadAPI.endpoint("tcp://[::1]:8081"), .tcp(host: "::1", port: 8081))
    }

    func testEndpointErrorsInGoSpiffesWords() {
        func message(_ value: String?) -> String {
            do {
                _ = try WorkloadAPI.endpoint(value)
                return "accepted"
            } catch { return error.description }
        }
        XCTAssertEqual(message(nil), "workload endpoint socket address is not configured")
        XCTAssertEqual(message(""), "workload endpoint socket address is not configured")
        XCTAssertTrue(message("unix://host/agent.sock").hasSuffix("unix socket URI must not include a host"))
        XCTAssertTrue(message("unix:agent.sock").hasSuffix("unix socket URI must not be opaque"))
        XCTAssertTrue(message("tcp://agent.local:8081").hasSuffix("tcp socket URI host component must be an IP:port"))
        XCTAssertTrue(message("tcp://127.0.0.1").hasSuffix("tcp socket URI host component must be an IP:port"))
        XCTAssertTrue(message("/run/agent.sock").hasSuffix("must have a \"tcp\" or \"unix\" scheme"))
    }

    func testDecodesSVIDsAndFederatedBundles() throws {
        var svid = ProtobufWriter()
        svid.string(1, "spiffe://example.org/probe")
        svid.lengthDelimited(2, [0x30, 0x01])
        svid.lengthDelimited(3, [0x30, 0x02])
        svid.lengthDelimited(4, [0x30, 0x03])
        svid.string(5, "a hint, ignored")
        var entry = ProtobufWriter()
        entry.string(1, "spiffe://other.org")
        entry.lengthDelimited(2, [0x30, 0x04])
        var response = ProtobufWriter()
        response.lengthDelimited(1, svid.bytes)
        response.lengthDelimited(2, [0x30, 0x05])  // a CRL, ignored
        response.lengthDelimited(3, entry.bytes)
        let context = try WorkloadAPI.decodeX509SVIDResponse(response.bytes)
        XCTAssertEqual(context.svids.count, 1)
        XCTAssertEqual(context.svids[0].spiffeID, "spiffe://example.org/probe")
        XCTAssertEqual(context.svids[0].certificates, [0x30, 0x01])
        XCTAssertEqual(context.svids[0].privateKey, [0x30, 0x02])
        XCTAssertEqual(context.svids[0].bundle, [0x30, 0x03])
        XCTAssertEqual(context.federatedBundles, ["spiffe://other.org": [0x30, 0x04]])
        // The TLS context gets the SVID and the roots by trust domain, however the agent keys them.
        let credentials = try XCTUnwrap(context.credentials)
        XCTAssertEqual(credentials.certificates, [0x30, 0x01])
        XCTAssertEqual(credentials.privateKey, [0x30, 0x02])
        XCTAssertEqual(credentials.bundles, ["example.org": [0x30, 0x03], "other.org": [0x30, 0x04]])
        XCTAssertThrowsError(try WorkloadAPI.decodeX509SVIDResponse(Array(response.bytes.dropLast())))
        XCTAssertEqual(try WorkloadAPI.decodeX509SVIDResponse([]).svids, [])
        XCTAssertNil(try WorkloadAPI.decodeX509SVIDResponse([]).credentials)
    }

    func testEverySVIDsBundleThenTheFederatedOnes() throws {
        func svid(_ id: String, _ bundle: UInt8) -> WorkloadAPI.X509SVID {
            WorkloadAPI.X509SVID(spiffeID: id, certificates: [0x30, bundle], privateKey: [0x30], bundle: [0x30, bundle])
        }
        var context = WorkloadAPI.X509Context()
        context.svids = [svid("spiffe://example.org/a", 1), svid("spiffe://other.org/b", 2), svid("spiffe://example.org/c", 3)]
        context.federatedBundles = ["spiffe://third.org": [0x30, 4]]
        let credentials = try XCTUnwrap(context.credentials)
        // The first SVID is presented; a later bundle of the same trust domain replaces an earlier.
        XCTAssertEqual(credentials.certificates, [0x30, 1])
        XCTAssertEqual(credentials.bundles, ["example.org": [0x30, 3], "other.org": [0x30, 2], "third.org": [0x30, 4]])
        context.federatedBundles = ["spiffe://other.org": [0x30, 5]]
        XCTAssertEqual(try XCTUnwrap(context.credentials).bundles["other.org"], [0x30, 5])
    }

    func testTrustDomains() {
        XCTAssertEqual(WorkloadAPI.trustDomain("spiffe://example.org/ns/default/sa/probe"), "example.org")
        XCTAssertEqual(WorkloadAPI.trustDomain("spiffe://example.org"), "example.org")
        XCTAssertEqual(WorkloadAPI.trustDomain("example.org"), "example.org")
    }
}
