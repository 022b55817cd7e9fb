import XCTest
@testable import Probe

final class ProbeOptionsTests: XCTestCase {
    func failure(_ arguments: [String]) -> ProbeFailure? {
        do {
            _ = try ProbeOptions.parse(arguments)
            return nil
        } catch {
            return error
        }
    }

    func testEachConflictIsRefusedWithTheReferencesMessage() {
        let cases: [([String], String)] = [
            ([], "error: -addr not specified"),
            (["-addr=x:1", "-connect-timeout=0s"], "error: -connect-timeout must be greater than zero (specified: 0s)"),
            (["-addr=x:1", "-rpc-timeout=-1s"], "error: -rpc-timeout must be greater than zero (specified: -1s)"),
            (["-addr=x:1", "-alts", "-spiffe"], "error: -alts and -spiffe are mutually incompatible"),
            (["-addr=x:1", "-tls", "-alts"], "error: cannot specify -tls with -alts"),
            (["-addr=x:1", "-tls-no-verify"], "error: specified -tls-no-verify without specifying -tls"),
            (["-addr=x:1", "-tls-ca-cert=c"], "error: specified -tls-ca-cert without specifying -tls"),
            (["-addr=x:1", "-tls-client-cert=c"], "error: specified -tls-client-cert without specifying -tls"),
            (["-addr=x:1", "-tls-server-name=n"], "error: specified -tls-server-name without specifying -tls"),
            (["-addr=x:1", "-tls", "-tls-client-cert=c"], "error: specified -tls-client-cert without specifying -tls-client-key"),
            (["-addr=x:1", "-tls", "-tls-client-key=k"], "error: specified -tls-client-key without specifying -tls-client-cert"),
            (["-addr=x:1", "-tls", "-tls-no-verify", "-tls-ca-cert=c"], "error: cannot specify -tls-ca-cert with -tls-no-verify (CA cert would not be used)"),
            (["-addr=x:1", "-tls", "-tls-no-verify", "-tls-server-name=n"],
             "error: cannot specify -tls-server-name with -tls-no-verify (server name would not be used)"),
            (["-addr=x:1", "-tls", "-spiffe"], "-tls and -spiffe are mutually incompatible"),
            (["-addr=x:1", "-alts"], "error: -alts is not supported: ALTS needs Google Cloud's ALTS handshaker; use -tls or -spiffe"),
        ]
        for (arguments, line) in cases {
            let refused = failure(arguments)
            XCTAssertEqual(refused?.exit, .invalidArguments, "\(arguments)")
            XCTAssertEqual(refused?.lines, [line], "\(arguments)")
        }
    }

    func testHeadersSplitAtTheFirstColonAndTheUserAgentIsOurs() throws {
        guard case .run(let options) = try ProbeOptions.parse(["-addr=x:1", "-rpc-header", "a: b: c", "-rpc-header", "x:y",
                                                               "-user-agent", "kubelet"]) else { return XCTFail() }
        XCTAssertEqual(options.rpcHeaders.map { "\($0.0)=\($0.1)" }, ["a=b: c", "x=y"])
        XCTAssertTrue(options.sentUserAgent.hasPrefix("kubelet grpc-init/"))
        XCTAssertEqual(options.connectTimeout.nanoseconds, 1_000_000_000)
        XCTAssertEqual(options.rpcTimeout.nanoseconds, 1_000_000_000)
    }

    func testABadFlagGivesGosMessageThenTheUsage() {
        let refused = failure(["-addr=x:1", "-rpc-header", "x-token"])
        XCTAssertEqual(refused?.exit, .invalidArguments)
        XCTAssertEqual(refused?.lines.first,
                       "invalid value \"x-token\" for flag -rpc-header: invalid RPC header, expected 'key: value', got \"x-token\"")
        XCTAssertEqual(refused?.lines.count, 2, "the message, then the usage")
    }
}
