@testable import Agent
import CShim
import Flags
import GateProtocol
import Glibc
import SystemCalls
import Transport
import XCTest

/// Discovery's policy for one listener, against servers in the test's own reactor: a gRPC
/// server is taken whatever its health service says; another protocol is passed over, with what
/// it answered; nothing is remembered as rejected that may answer later.
final class ListenerAttemptTests: XCTestCase {
    var reactor: Reactor!
    var sent: [AgentMessage] = []

    override func setUp() { reactor = Reactor() }

    func attempt(_ name: String) -> ListenerAttempt {
        var configuration = GateConfiguration()
        configuration.connectTimeout = GoDuration(nanoseconds: 500_000_000)
        configuration.rpcTimeout = GoDuration(nanoseconds: 500_000_000)
        let reporter = Reporter { [unowned self] in self.sent.append($0) }
        let credentials = Credentials(configuration, svids: nil, reporter: reporter)
        let attempt = ListenerAttempt(Listener(address: .unix(path: "@" + name), inode: 1), owner: nil, plan: AgentPlan(configuration),
                                      credentials: credentials, security: .plaintext, reach: .plaintext)
        reactor.add(attempt)
        XCTAssertEqual(reactor.run(until: { attempt.verdict != nil }, deadline: MonotonicClock.deadline(after: 5_000_000_000)), .done)
        return attempt
    }

    func testAGRPCServerIsTakenWhateverItsHealthSays() throws {
        let server = try XCTUnwrap(InProcessHealthServer())
        server.statuses = [:]  // every service unknown: NOT_FOUND is still the health service answering
        reactor.add(server)
        guard case .grpc(let found) = attempt(server.name).verdict else { return XCTFail("not taken") }
        XCTAssertEqual(found.reach, .plaintext)
        XCTAssertTrue(found.discovered)
    }

    func testAnotherProtocolIsPassedOverWithWhatItAnswered() throws {
        let banner = try XCTUnwrap(Banner("SSH-2.0-OpenSSH_9.2\r\n"))
        reactor.add(banner)
        guard case .rejected(.other(let why)) = attempt(banner.name).verdict else { return XCTFail("not rejected for what it answered") }
        XCTAssertTrue(why.contains("does not speak HTTP/2 (it answered \"SSH-2.0-OpenSSH_9.2\")"), why)
        XCTAssertFalse(why.contains("-tls"), "the agent tried TLS itself: no flag to suggest")
    }

    func testASilentListenerIsNotAServerYet() throws {
        let silent = try XCTUnwrap(Banner(nil))
        reactor.add(silent)
        guard case .unavailable(let why)? = attempt(silent.name).verdict else { return XCTFail("judged at once") }
        XCTAssertTrue(why.contains("no HTTP/2 answer"), why)
    }
}

/// A listener that accepts and writes one line (or nothing), as a server of another protocol.
final class Banner: EventSource {
    let name = "grpc-init-tests/banner/\(getpid())/\(UInt64.random(in: 0 ... .max))"
    let line: String?
    private let listener: Socket
    private var accepted: [Socket] = []

    init?(_ line: String?) {
        self.line = line
        let fd = cshim_listen_abstract(name, 16)
        guard fd >= 0 else { return nil }
        listener = Socket.adopt(listening: fd)
    }

    func descriptors(into set: inout [pollfd]) { set.append(pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)) }
    var wakeAt: Int64? { nil }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        while case .connection(let socket) = listener.acceptNext() {
            accepted.append(socket)
            if let line { _ = Array(line.utf8).withUnsafeBytes { socket.write($0) } }
        }
    }
}
