import Glibc
import SystemCalls
import Transport
import XCTest

/// The sockets behind the agent's listeners and the probe's way to the agent: a full backlog
/// told apart from no listener, the listener's process named, and a listener that rests instead
/// of spinning when descriptors run out.
final class ListeningSocketTests: XCTestCase {
    private func listen(_ name: String, backlog: Int32) throws -> (Socket, SocketAddress) {
        let address = try XCTUnwrap(SocketAddress.unix(name, abstract: true))
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(address.withSockaddr { bind(fd, $0, $1) }, 0)
        XCTAssertEqual(Glibc.listen(fd, backlog), 0)
        return (Socket.adopt(listening: fd), address)
    }

    private func uniqueName(_ what: String) -> String { "grpc-init-test/\(what)/\(getpid())/\(MonotonicClock.now())" }

    func testAFullBacklogIsToldApartFromNoListener() throws {
        let (listener, address) = try listen(uniqueName("backlog"), backlog: 0)
        var held: [Socket] = []
        var full = false
        for _ in 0..<8 where !full {
            switch Socket.connectUnix(to: address) {
            case .connected(let socket): held.append(socket)
            case .backlogFull: full = true
            case .failed(let code): XCTFail("\(code)")
            }
        }
        XCTAssertTrue(full, "\(held.count) connections pending and none refused")
        _ = listener
        guard case .failed(let code) = Socket.connectUnix(to: try XCTUnwrap(SocketAddress.unix(uniqueName("nobody"), abstract: true))) else {
            return XCTFail("connected to a name nobody holds")
        }
        XCTAssertEqual(code, Errno(ECONNREFUSED))
    }

    func testTheListenersProcessIsNamed() throws {
        let (listener, address) = try listen(uniqueName("peer"), backlog: 4)
        guard case .connected(let client) = Socket.connectUnix(to: address) else { return XCTFail("not connected") }
        XCTAssertEqual(client.peerProcessID, getpid())
        guard case .connection(let accepted) = listener.acceptNext() else { return XCTFail("nothing to accept") }
        XCTAssertEqual(accepted.peerProcessID, getpid())
        guard case .none = listener.acceptNext() else { return XCTFail("a second connection") }
    }

    func testOutOfDescriptorsOneConnectionIsRefusedAndTheListenerRests() throws {
        let (socket, address) = try listen(uniqueName("emfile"), backlog: 4)
        let listener = ListeningSocket(socket)
        guard case .connected(let first) = Socket.connectUnix(to: address),
              case .connected(let second) = Socket.connectUnix(to: address) else { return XCTFail("not connected") }
        // No descriptor left: the lowest free one is the limit.
        let lowest = dup(0)
        close(lowest)
        var saved = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        var tight = saved
        tight.rlim_cur = rlim_t(lowest)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &tight), 0)
        defer { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) }

        guard case .exhausted(let code) = listener.accept() else { return XCTFail("accepted with no descriptor left") }
        XCTAssertEqual(code, Errno(EMFILE))
        let now = MonotonicClock.now()
        listener.refuseOne(now: now)
        // The first connection was taken and closed: its client reads the end at once.
        var byte: UInt8 = 0
        XCTAssertEqual(recv(first.fd, &byte, 1, Int32(MSG_DONTWAIT)), 0)
        XCTAssertEqual(recv(second.fd, &byte, 1, Int32(MSG_DONTWAIT)), -1, "the second one still waits")
        // The listener rests: it is not polled, so a readable listener cannot spin the loop.
        var polled: [pollfd] = []
        listener.descriptors(into: &polled)
        XCTAssertTrue(polled.isEmpty)
        XCTAssertEqual(listener.pausedUntil, now + ListeningSocket.pause)
        listener.resume(now: now + ListeningSocket.pause)
        listener.descriptors(into: &polled)
        XCTAssertEqual(polled.map(\.fd), [socket.fd])
        // The reserve is held again: with the limit restored, the next connection is accepted.
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        guard case .connection = listener.accept() else { return XCTFail("the second connection is not accepted") }
    }
}
