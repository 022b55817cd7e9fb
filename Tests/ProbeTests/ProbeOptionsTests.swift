import XCTest
import Wire
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
            (["-addr=x:1", "-connect-timeout=0s"], "error: -connect-timeout must be greater than zero (specified: 0s)"),
            (["-addr=x:1", "-rpc-timeout=-1s"], "error: -rpc-timeout must be greater than zero (specified: -1s)"),
            (["-addr=x:1", "-connect-timeout=-2562047h47m16.854775808s"],
             "error: -connect-timeout must be greater than zero (specified: -2562047h47m16.854775808s)"),
            (["-addr=x:1", "-rpc-timeout=-1ns"], "error: -rpc-timeout must be greater than zero (specified: -1ns)"),
            // Go reads this sum as 0s (its uint64 wraps), so it is refused as 0s is.
            (["-addr=x:1", "-rpc-timeout=9223372036854775808ns9223372036854775808ns"],
             "error: -rpc-timeout must be greater than zero (specified: 0s)"),
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

    /// With no -addr, the run asks grpc-init's agent, or fails as the reference does: the
    /// reference checks -addr first, so a second problem is kept for the agent's case only.
    func testNoAddressDefersItsChecks() throws {
        guard case .run(let plain) = try ProbeOptions.parse([]) else { return XCTFail() }
        XCTAssertEqual(plain.addr, "")
        XCTAssertNil(plain.deferredFailure)
        XCTAssertEqual(ProbeOptions.addressMissing.lines, ["error: -addr not specified"])
        XCTAssertEqual(ProbeOptions.addressMissing.exit, .invalidArguments)
        guard case .run(let bad) = try ProbeOptions.parse(["-connect-timeout=0s", "-service", ""]) else { return XCTFail() }
        XCTAssertEqual(bad.deferredFailure?.lines, ["error: -connect-timeout must be greater than zero (specified: 0s)"])
        XCTAssertTrue(bad.serviceGiven, "-service given, even empty: that service is asked about")
    }

    func testGosLargestAndSmallestPositiveDurationsAreTaken() throws {
        guard case .run(let largest) = try ProbeOptions.parse(["-addr=x:1", "-connect-timeout=2562047h47m16.854775807s",
                                                               "-rpc-timeout=2562047h47m16.854775807s"]) else { return XCTFail() }
        XCTAssertEqual(largest.connectTimeout.nanoseconds, .max)
        XCTAssertEqual(largest.rpcTimeout.nanoseconds, .max)
        XCTAssertEqual(largest.verboseLines[1], Array("> addr=x:1 conn_timeout=2562047h47m16.854775807s rpc_timeout=2562047h47m16.854775807s".utf8))
        guard case .run(let smallest) = try ProbeOptions.parse(["-addr=x:1", "-connect-timeout=1ns", "-rpc-timeout=1ns"]) else { return XCTFail() }
        XCTAssertEqual(smallest.connectTimeout.nanoseconds, 1)
        XCTAssertEqual(smallest.rpcTimeout.nanoseconds, 1)
    }

    func testHeadersSplitAtTheFirstColonAndTheUserAgentIsOurs() throws {
        guard case .run(let options) = try ProbeOptions.parse(["-addr=x:1", "-rpc-header", "a: b: c", "-rpc-header", "x:y",
                                                               "-user-agent", "kubelet"]) else { return XCTFail() }
        XCTAssertEqual(options.metadata.map { "\($0.name)=\($0.value)" }, ["a=b: c", "x=y"])
        XCTAssertTrue(String(decoding: options.sentUserAgent, as: UTF8.self).hasPrefix("kubelet grpc-init/"))
        XCTAssertTrue(String(decoding: ProbeOptions.sentUserAgent([]), as: UTF8.self).hasPrefix(" grpc-init/"),
                      "grpc-go appends a space and its token to an empty user-agent too")
    }

    func testVerboseHeadersAreTheValuesBytes() throws {
        let raw: [[UInt8]] = [Array("-addr=x:1".utf8), Array("-rpc-header=k: a".utf8) + [0xFF], Array("-rpc-header=K:".utf8) + [0xC3],
                              Array("-rpc-header=b: 1".utf8)]
        guard case .run(let options) = try ProbeOptions.parse(raw.map { String(decoding: $0, as: UTF8.self) }, rawArguments: raw) else {
            return XCTFail()
        }
        XCTAssertEqual(options.verboseLines[2], Array("> headers: {map[b:[1] k:[a".utf8) + [0xFF, 0x20, 0xC3] + Array("]]}".utf8))
    }

    func testTheUsageIsGosPrintDefaultsOfTheReleasesFlags() {
        let usage = ProbeOptions.usage
        XCTAssertTrue(usage.hasPrefix("Usage:\n  -addr string\n    \t(required) tcp host:port to connect\n  -alts\n"))
        XCTAssertTrue(usage.hasSuffix("\n  -v\tverbose logs\n  -version\n    \tshow probe version and exit"), "its last line, unterminated: printed as one line")
    }

    func testAnAddressGosURLPackageRefusesIsWordedAsGoWordsIt() throws {
        let escape = ProbeFailure.unparsable("[::1%1]:5", .invalidEscape(url: "passthrough:///[::1%1]:5", escape: "%1]"))
        XCTAssertEqual(escape.exit, .connectionFailure)
        XCTAssertEqual(escape.lines, [#"error: failed to connect service at "[::1%1]:5": parse "passthrough:///[::1%1]:5": invalid URL escape "%1]""#])
        let control = ProbeFailure.unparsable("h\u{1}:5", .controlCharacter(url: "passthrough:///h\u{1}:5"))
        XCTAssertEqual(control.lines, [#"error: failed to connect service at "h\x01:5": parse "passthrough:///h\x01:5": net/url: invalid control character in URL"#])
    }

    func testArgumentsAreBytesAsGoKeepsThem() throws {
        let raw: [[UInt8]] = [Array("-addr=x:1".utf8), Array("-service=ok".utf8) + [0xC3], Array("-user-agent".utf8), [0xFF],
                              Array("-rpc-header=k: ".utf8) + [0xCC, 0x81] + Array("b".utf8),
                              Array("-rpc-header=\u{E9}:1".utf8), Array("-rpc-header=e\u{301}:2".utf8)]
        guard case .run(let options) = try ProbeOptions.parse(raw.map { String(decoding: $0, as: UTF8.self) }, rawArguments: raw) else {
            return XCTFail()
        }
        XCTAssertEqual(options.service, Array("ok".utf8) + [0xC3], "not re-encoded")
        XCTAssertEqual(options.userAgent, [0xFF])
        XCTAssertEqual(options.metadata[0].valueBytes, [0xCC, 0x81] + Array("b".utf8), "a combining mark after the space stays")
        XCTAssertEqual(Set(options.metadata.dropFirst().map(\.nameBytes)).count, 2, "é and e+U+0301 are two keys, as bytes")
        XCTAssertEqual(GRPCClient.goLowercased(Array("\u{130}".utf8)), Array("i".utf8), "Go's simple lower case")
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
