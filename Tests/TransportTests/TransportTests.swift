import Addressing
import Foundation
import XCTest
@testable import Transport
import SystemCalls
import Glibc

final class TargetTests: XCTestCase {
    func testForms() throws {
        XCTAssertEqual(try Target.parse("example.com:443"), .tcp(host: "example.com", port: 443))
        XCTAssertEqual(try Target.parse(":8080"), .tcp(host: "localhost", port: 8080))
        XCTAssertEqual(try Target.parse("[::1]:50051"), .tcp(host: "::1", port: 50051))
        XCTAssertEqual(try Target.parse("10.0.0.1:1"), .tcp(host: "10.0.0.1", port: 1))
        XCTAssertEqual(try Target.parse("dns:///svc.local:80"), .tcp(host: "svc.local", port: 80))
        XCTAssertEqual(try Target.parse("unix:///run/app.sock"), .unix(path: "/run/app.sock"))
        XCTAssertEqual(try Target.parse("unix:/run/app.sock"), .unix(path: "/run/app.sock"))
        XCTAssertEqual(try Target.parse("unix:relative.sock"), .unix(path: "relative.sock"))
        XCTAssertEqual(try Target.parse("unix-abstract:grpc"), .unixAbstract(name: "grpc"))
        XCTAssertEqual(Target.tcp(host: "::1", port: 5).authority, "[::1]:5")
    }

    func testErrors() {
        XCTAssertThrowsError(try Target.parse("example.com")) { XCTAssertEqual($0 as? Target.ParseError, .missingPort("example.com")) }
        XCTAssertThrowsError(try Target.parse("host:http")) { XCTAssertEqual($0 as? Target.ParseError, .invalidPort("host:http")) }
        XCTAssertThrowsError(try Target.parse("host:70000"))
        XCTAssertThrowsError(try Target.parse("::1:80"))
        XCTAssertThrowsError(try Target.parse("[::1"))
        XCTAssertThrowsError(try Target.parse("unix://relative"))
        XCTAssertThrowsError(try Target.parse("unix:"))
    }
}

/// -addr as grpc-go reads a dial target: a URL, under passthrough:/// unless it names a scheme
/// grpc-go resolves; the endpoint as written is the authority.
final class TargetAsGRPCGoReadsItTests: XCTestCase {
    func resolved(_ address: String) throws -> (Target, String) {
        let r = try Target.resolve(address)
        return (r.target, r.authority)
    }

    func testEndpointsAndAuthorities() throws {
        let cases: [(String, Target, String)] = [
            ("localhost:50051", .tcp(host: "localhost", port: 50051), "localhost:50051"),
            (":50051", .tcp(host: "localhost", port: 50051), "localhost:50051"),
            ("[127.0.0.1]:5", .tcp(host: "127.0.0.1", port: 5), "[127.0.0.1]:5"),
            ("[::1]:5", .tcp(host: "::1", port: 5), "[::1]:5"),
            ("127.0.0.1:+5", .tcp(host: "127.0.0.1", port: 5), "127.0.0.1:+5"),
            ("passthrough:127.0.0.1:5", .tcp(host: "127.0.0.1", port: 5), "127.0.0.1:5"),
            ("PASSTHROUGH:///h:5", .tcp(host: "h", port: 5), "h:5"),
            ("dns:h:5", .tcp(host: "h", port: 5), "h:5"),
            ("passthrough://ignored/h:5", .tcp(host: "h", port: 5), "h:5"),
            ("dns://8.8.8.8:53/10.0.0.1:5", .tcp(host: "10.0.0.1", port: 5), "10.0.0.1:5"),
            ("127.0.0.1:%35", .tcp(host: "127.0.0.1", port: 5), "127.0.0.1:5"),
            ("[fe80::1%25lo]:5", .tcp(host: "fe80::1%lo", port: 5), "[fe80::1%25lo]:5"),
            ("h:5?query", .tcp(host: "h", port: 5), "h:5"),
            ("h:5#fragment", .tcp(host: "h", port: 5), "h:5"),
            ("h\u{E9}:5", .tcp(host: "h\u{E9}", port: 5), "h%C3%A9:5"),
            ("unix:///run/a.sock", .unix(path: "/run/a.sock"), "localhost"),
        ]
        for (address, target, authority) in cases {
            let (t, a) = try resolved(address)
            XCTAssertEqual(t, target, address)
            XCTAssertEqual(a, authority, address)
        }
    }

    func testWhatGosURLPackageRefuses() {
        func refusal(_ address: String) -> Target.ParseError? {
            do { _ = try Target.resolve(address); return nil } catch { return error }
        }
        XCTAssertEqual(refusal("[::1%1]:5"), .invalidEscape(url: "passthrough:///[::1%1]:5", escape: "%1]"))
        XCTAssertEqual(refusal("h:5%"), .invalidEscape(url: "passthrough:///h:5%", escape: "%"))
        XCTAssertEqual(refusal("h:5%4"), .invalidEscape(url: "passthrough:///h:5%4", escape: "%4"))
        XCTAssertEqual(refusal("h:5#%zz"), .invalidEscape(url: "passthrough:///h:5#%zz", escape: "%zz"), "the fragment's, named with it")
        XCTAssertEqual(refusal("h\u{1}:5"), .controlCharacter(url: "passthrough:///h\u{1}:5"))
        XCTAssertEqual(refusal("passthrough:127.0.0.1:1:2"), .invalid("127.0.0.1:1:2", "too many colons in address"))
    }
}

final class ResolverTests: XCTestCase {
    func testLiteralsAndDescriptions() throws {
        XCTAssertEqual(SocketAddress.literal("127.0.0.1", port: 80)?.description, "127.0.0.1:80")
        XCTAssertEqual(SocketAddress.literal("::1", port: 80)?.description, "[::1]:80")
        XCTAssertEqual(SocketAddress.literal("fe80::1%1", port: 80)?.description, "[fe80::1]:80")
        XCTAssertNil(SocketAddress.literal("localhost", port: 80))
        XCTAssertEqual(SocketAddress.unix("/tmp/x.sock", abstract: false)?.description, "/tmp/x.sock")
        XCTAssertEqual(SocketAddress.unix("name", abstract: true)?.description, "@name")
    }

    func testHostsFile() {
        let text = "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.1.2.3 Db.Example db # trailing\nbad line\n"
        XCTAssertEqual(HostsFile.lookup("localhost", text: text, port: 1).map(\.description), ["127.0.0.1:1", "[::1]:1"])
        XCTAssertEqual(HostsFile.lookup("DB", text: text, port: 5).map(\.description), ["10.1.2.3:5"])
        XCTAssertEqual(HostsFile.lookup("db.example.", text: text, port: 5).map(\.description), ["10.1.2.3:5"])
        XCTAssertTrue(HostsFile.lookup("other", text: text, port: 5).isEmpty)
    }

    func testLocalhostWithoutHostsFile() throws {
        var resolver = Resolver()
        resolver.hostsPath = "/nonexistent/hosts"
        guard case .addresses(let found) = try resolver.start(.tcp(host: "localhost", port: 7), deadline: Int64.max) else {
            return XCTFail("localhost is known without asking DNS")
        }
        XCTAssertEqual(found.map(\.description), ["127.0.0.1:7", "[::1]:7"])
    }

    func testResolvConfSearchAndNdots() {
        let conf = ResolvConf("nameserver 10.0.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5 timeout:2 attempts:3\n")
        XCTAssertEqual(conf.nameservers, ["10.0.0.10"])
        XCTAssertEqual(conf.ndots, 5)
        XCTAssertEqual(conf.timeoutSeconds, 2)
        XCTAssertEqual(conf.attempts, 3)
        XCTAssertEqual(conf.candidates(for: "api"), ["api.ns.svc.cluster.local.", "api.svc.cluster.local.", "api."])
        XCTAssertEqual(conf.candidates(for: "api.example.com."), ["api.example.com."])
        let plain = ResolvConf("")
        XCTAssertEqual(plain.candidates(for: "a.b"), ["a.b."])
        XCTAssertEqual(plain.nameservers, ["127.0.0.1", "::1"])
    }

    func testDNSMessages() throws {
        let q = try XCTUnwrap(DNSMessage.query(id: 0x1234, name: "a.bc.", type: 1))
        XCTAssertEqual(q, [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 2, 0x62, 0x63, 0, 0, 1, 0, 1])
        XCTAssertNil(DNSMessage.query(id: 1, name: String(repeating: "x", count: 64) + ".com", type: 1))
        // Reply: the question, a CNAME, then an A record whose name is a compression pointer.
        var reply: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]
        reply += Array(q[12...])
        reply += [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 12]
        reply += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]
        let parsed = try XCTUnwrap(DNSMessage.parseReply(reply, port: 443))
        XCTAssertEqual(parsed.id, 0x1234)
        XCTAssertEqual(parsed.rcode, 0)
        XCTAssertEqual(parsed.addresses.map(\.description), ["192.0.2.7:443"])
        XCTAssertNil(DNSMessage.parseReply(Array(reply.prefix(5)), port: 1))
    }
}

final class PEMInputTests: XCTestCase {
    func testBlockTypes() {
        let text = Array("junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nBB\n-----END EC PRIVATE KEY-----\n-----BEGIN broken\n".utf8)
        XCTAssertEqual(PEMInput.blockTypes(text), ["CERTIFICATE", "EC PRIVATE KEY"])
        XCTAssertEqual(PEMInput.blockTypes([]), [])
    }

    func testCertificateFailuresInGoWords() {
        XCTAssertEqual(PEMInput.certificateFailure([]), "tls: failed to find any PEM data in certificate input")
        XCTAssertEqual(PEMInput.certificateFailure(["RSA PRIVATE KEY"]),
                       "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched")
        XCTAssertEqual(PEMInput.certificateFailure(["PUBLIC KEY", "X509 CRL"]),
                       "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [PUBLIC KEY X509 CRL]")
        XCTAssertEqual(PEMInput.certificateFailure(["CERTIFICATE"]), "x509: malformed certificate")
    }

    func testKeyFailuresInGoWords() {
        XCTAssertEqual(PEMInput.keyFailure([]), "tls: failed to find any PEM data in key input")
        XCTAssertEqual(PEMInput.keyFailure(["CERTIFICATE"]), "tls: found a certificate rather than a key in the PEM for the private key")
        XCTAssertEqual(PEMInput.keyFailure(["CERTIFICATE", "PUBLIC KEY"]),
                       "tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input after skipping PEM blocks of the following types: [CERTIFICATE PUBLIC KEY]")
        XCTAssertEqual(PEMInput.keyFailure(["CERTIFICATE", "PRIVATE KEY"]), "tls: failed to parse private key")
        // An encrypted key does not parse, in Go's words too.
        XCTAssertEqual(PEMInput.keyFailure(["ENCRYPTED PRIVATE KEY"]), "tls: failed to parse private key")
    }

    func testBlocksCountAsGosPEMDecoderCountsThem() {
        let truncated = Array("-----BEGIN CERTIFICATE-----\nMIIB\n".utf8)
        XCTAssertEqual(PEMInput.blockTypes(truncated), [], "no END line: no block")
        XCTAssertEqual(PEMInput.certificateFailure(PEMInput.blockTypes(truncated)), "tls: failed to find any PEM data in certificate input")
        let indented = Array("  -----BEGIN CERTIFICATE-----\n  AAAA\n  -----END CERTIFICATE-----\n".utf8)
        XCTAssertEqual(PEMInput.blockTypes(indented), [], "a BEGIN line starts a line")
    }
}

final class FilesTests: XCTestCase {
    private func temporaryDirectory() throws -> String {
        var template = Array("/tmp/grpc-init-files-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        XCTAssertNotNil(made)
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func write(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, bytes.count)
        close(fd)
    }

    func testReadsWholeFilesOfEverySizeUpToTheLimit() throws {
        let dir = try temporaryDirectory()
        for size in [0, 1, 4095, 4096, 4097, 70_000] {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            write(dir + "/f", bytes)
            XCTAssertEqual(try Files.read(dir + "/f", limit: 70_000), bytes, "size \(size)")
        }
        XCTAssertThrowsError(try Files.read(dir + "/f", limit: 69_999))
        XCTAssertThrowsError(try Files.read(dir, limit: 1000))      // a directory is not a file
        XCTAssertThrowsError(try Files.read(dir + "/missing"))
        // Files whose size stat does not tell (procfs) are read to their end.
        XCTAssertTrue(String(decoding: try Files.read("/proc/self/status"), as: UTF8.self).contains("Name:"))
    }

    func testDirectoryEntriesIdentitiesAndLinks() throws {
        let dir = try temporaryDirectory()
        write(dir + "/a.pem", [1])
        mkdir(dir + "/sub", 0o755)
        symlink("a.pem", dir + "/12345678.0")
        symlink("sub/../a.pem", dir + "/via-sub")
        let entries = try XCTUnwrap(Files.entries(of: dir)).sorted { $0.name < $1.name }
        XCTAssertEqual(entries.map(\.name), ["12345678.0", "a.pem", "sub", "via-sub"])
        XCTAssertEqual(entries.map(\.isDirectory), [false, false, true, false])
        XCTAssertEqual(entries.map(\.isSymbolicLink), [true, false, false, true])
        XCTAssertEqual(Files.linkTarget(dir + "/12345678.0"), "a.pem")
        XCTAssertNil(Files.linkTarget(dir + "/a.pem"))
        XCTAssertEqual(Files.identity(dir + "/via-sub"), Files.identity(dir + "/a.pem"))
        XCTAssertNotEqual(Files.identity(dir + "/sub"), Files.identity(dir + "/a.pem"))
        XCTAssertTrue(Files.isRegularFile(dir + "/a.pem"))
        XCTAssertFalse(Files.isRegularFile(dir + "/12345678.0"))
        XCTAssertNil(Files.entries(of: dir + "/missing"))
    }
}
