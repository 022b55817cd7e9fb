import Addressing
@testable import Agent
import SystemCalls
import XCTest

final class DiscoveryTests: XCTestCase {
    func testTCPListenRowsOnly() {
        // As the kernel prints them on a little-endian machine: 127.0.0.1:50051 and 0.0.0.0:8080
        // listening, one established connection.
        let text = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
           1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41240 1 0000000000000000 100 0 0 10 0
           2: 0100007F:C383 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 41250 1 0000000000000000 20 4 30 10 -1
        """
        let found = Discovery.parseTCP(text)
        XCTAssertEqual(found.map(\.inode), [41234, 41240])
        XCTAssertEqual(found.map(\.description), ["127.0.0.1:50051", "127.0.0.1:8080"], "the wildcard over loopback")
        XCTAssertEqual(found[0].target, .tcp(host: "127.0.0.1", port: 50051))
    }

    func testTCP6AddressesAndTheirLoopbackForms() {
        let text = """
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 00000000000000000000000001000000:C383 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1
           1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5002 1
           2: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5003 1
           3: B80D0120000000000000000001000000:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5004 1
        """
        XCTAssertEqual(Discovery.parseTCP(text).map(\.description),
                       ["[::1]:50051", "[::1]:8080", "127.0.0.1:80", "[2001:db8::1]:81"])
    }

    func testUnixListeningStreamSocketsWithPaths() {
        let text = """
        Num       RefCount Protocol Flags    Type St Inode Path
        0000000000000000: 00000002 00000000 00010000 0001 01 7001 /run/server.sock
        0000000000000000: 00000002 00000000 00010000 0001 01 7002 @grpc abstract
        0000000000000000: 00000003 00000000 00000000 0001 03 7003 /run/server.sock
        0000000000000000: 00000002 00000000 00010000 0002 01 7004 /run/dgram.sock
        0000000000000000: 00000002 00000000 00010000 0001 01 7005
        """
        let found = Discovery.parseUnix(text)
        XCTAssertEqual(found.map(\.inode), [7001, 7002])
        XCTAssertEqual(found.map(\.description), ["unix:/run/server.sock", "unix-abstract:grpc abstract"])
    }

    func testSocketLinksAndStatParents() {
        XCTAssertEqual(Discovery.socketInode("socket:[12345]"), 12345)
        XCTAssertNil(Discovery.socketInode("pipe:[12345]"))
        XCTAssertNil(Discovery.socketInode("socket:[x]"))
        XCTAssertNil(Discovery.socketInode("socket:[]"))
        XCTAssertNil(Discovery.socketInode("socket:[99999999999999999999]"), "past UInt64")
        XCTAssertEqual(Discovery.socketInode("socket:[18446744073709551615]"), .max)
        XCTAssertEqual(Discovery.parentPID(stat: "42 (my (odd) name) S 7 42 42 0 -1"), 7)
        XCTAssertNil(Discovery.parentPID(stat: "garbage"))
    }

    func testThisProcessListensAndIsFound() throws {
        // A real listener of a child process, found from /proc as the agent finds it.
        let child = fork()
        if child == 0 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(fd, 1)
            pause()
            _exit(0)
        }
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        let deadline = MonotonicClock.deadline(after: 5_000_000_000)
        var scan = Discovery.scan(root: getpid(), excluding: 0)
        while scan.listeners.isEmpty && MonotonicClock.now() < deadline {
            usleep(2000)  // the child's listen(2), which nothing signals; bounded
            scan = Discovery.scan(root: getpid(), excluding: 0)
        }
        XCTAssertEqual(scan.listeners.count, 1)
        XCTAssertEqual(scan.owners[scan.listeners[0].inode], child)
        XCTAssertTrue(scan.listeners[0].description.hasPrefix("127.0.0.1:"))
    }

    // MARK: What the scans remember

    private func tcp(_ port: UInt16, _ inode: UInt64) -> Listener {
        Listener(address: .tcp(bytes: [127, 0, 0, 1], port: port), inode: inode)
    }

    func testTheTreeIsWalkedOnlyForListenersNotClassifiedYet() {
        var survey = ListenerSurvey(root: 1, excluding: 0)
        var asked: [Set<UInt64>] = []
        // The tree holds 11 (pid 100) and 13 (pid 101); 12 is another process's.
        let tree: [UInt64: pid_t] = [11: 100, 13: 101]
        func scan(_ listening: [Listener]) -> Discovery.Scan {
            survey.classify(listening) { wanted in
                asked.append(wanted)
                return tree.filter { wanted.contains($0.key) }
            }
        }
        let a = tcp(1, 11), b = tcp(2, 12), c = tcp(3, 13)
        var result = scan([a, b])
        XCTAssertEqual(asked, [[11, 12]], "one walk classifies every new listener")
        XCTAssertEqual(result.listeners, [a])
        XCTAssertEqual(result.owners, [11: 100])
        result = scan([a, b])
        XCTAssertEqual(asked.last, [12], "a listener one walk missed is looked for once more")
        XCTAssertEqual(survey.foreign, [12])
        for _ in 0..<5 { result = scan([a, b]) }
        XCTAssertEqual(asked.count, 2, "nothing new: no walk")
        XCTAssertEqual(result.listeners, [a])
        result = scan([a, b, c])
        XCTAssertEqual(asked.last, [13], "only the new one")
        XCTAssertEqual(result.listeners, [a, c])
        XCTAssertEqual(result.owners, [11: 100, 13: 101])
        XCTAssertEqual(survey.walks, 3)

        // Gone from the tables: forgotten, both the tree's and the other's.
        result = scan([c])
        XCTAssertEqual(result.listeners, [c])
        XCTAssertEqual(survey.held, [13: 101])
        XCTAssertEqual(survey.foreign, [])
        XCTAssertEqual(survey.walks, 3)
        // An inode seen again is a new socket: classified again.
        result = scan([c, a])
        XCTAssertEqual(asked.last, [11])
        XCTAssertEqual(result.listeners, [c, a], "in the tables' order")
    }

    func testASocketMissedByOneWalkAndHeldByTheNextIsTheTrees() {
        // A server that listens, then daemonizes: the first walk sees neither its old process
        // holding the socket nor the new one yet.
        var survey = ListenerSurvey(root: 1, excluding: 0)
        var walks = 0
        let listener = tcp(50051, 77)
        let first = survey.classify([listener]) { _ in
            walks += 1
            return [:]
        }
        XCTAssertEqual(first.listeners, [])
        let second = survey.classify([listener]) { _ in
            walks += 1
            return [77: 4242]
        }
        XCTAssertEqual(second.listeners, [listener])
        XCTAssertEqual(second.owners, [77: 4242])
        XCTAssertEqual(survey.missedOnce, [])
        _ = survey.classify([listener]) { _ in
            XCTFail("classified: no walk")
            return [:]
        }
        XCTAssertEqual(walks, 2)
    }

    func testAWalkCutShortClassifiesNothing() {
        // Descriptors running out mid-walk: what it did not find may still be the tree's, so
        // however often that happens the server's socket is looked for again.
        var survey = ListenerSurvey(root: 1, excluding: 0)
        let listener = tcp(50051, 77)
        for _ in 0..<5 {
            XCTAssertEqual(survey.classify([listener]) { _ in nil }.listeners, [])
            XCTAssertEqual(survey.foreign, [])
            XCTAssertEqual(survey.missedOnce, [])
        }
        XCTAssertEqual(survey.classify([listener]) { _ in [77: 4242] }.listeners, [listener])
        XCTAssertEqual(survey.walks, 6)
    }

    func testNoListenerNoWalk() {
        var survey = ListenerSurvey(root: 1, excluding: 0)
        let result = survey.classify([]) { _ in
            XCTFail("nothing to classify")
            return [:]
        }
        XCTAssertEqual(result.listeners, [])
        XCTAssertEqual(survey.walks, 0)
    }

    // MARK: sock_diag

    private func message(type: UInt16 = 20, sequence: UInt32, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt32(16 + payload.count)) { bytes += $0 }
        withUnsafeBytes(of: type) { bytes += $0 }
        withUnsafeBytes(of: UInt16(2)) { bytes += $0 }  // NLM_F_MULTI
        withUnsafeBytes(of: sequence) { bytes += $0 }
        withUnsafeBytes(of: UInt32(1234)) { bytes += $0 }
        bytes += payload
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    /// struct inet_diag_msg for a listening socket.
    private func inet(family: Int32, address: [UInt8], port: UInt16, inode: UInt32, state: UInt8 = 10) -> [UInt8] {
        var p = [UInt8(family), state, 0, 0, UInt8(port >> 8), UInt8(port & 0xFF), 0, 0]
        p += address + [UInt8](repeating: 0, count: 16 - address.count)  // source
        p += [UInt8](repeating: 0, count: 16)  // destination
        p += [UInt8](repeating: 0, count: 4 + 8 + 4 + 4 + 4 + 4)  // interface, cookie, expires, queues, uid
        withUnsafeBytes(of: inode) { p += $0 }
        return p
    }

    /// struct unix_diag_msg and a UNIX_DIAG_NAME attribute.
    private func unix(name: [UInt8]?, inode: UInt32, type: UInt8 = 1, state: UInt8 = 10) -> [UInt8] {
        var p = [UInt8(AF_UNIX), type, state, 0]
        withUnsafeBytes(of: inode) { p += $0 }
        p += [UInt8](repeating: 0, count: 8)
        // An attribute that is not the name first (UNIX_DIAG_SHUTDOWN), as the kernel may send.
        p += [5, 0, 6, 0, 0, 0, 0, 0]
        if let name {
            withUnsafeBytes(of: UInt16(4 + name.count)) { p += $0 }
            withUnsafeBytes(of: UInt16(0)) { p += $0 }
            p += name
            while p.count % 4 != 0 { p.append(0) }
        }
        return p
    }

    func testInetDumpsListTheListeningSockets() {
        var datagram = message(sequence: 7, payload: inet(family: AF_INET, address: [127, 0, 0, 1], port: 50051, inode: 41234))
        datagram += message(sequence: 7, payload: inet(family: AF_INET, address: [0, 0, 0, 0], port: 8080, inode: 41240))
        datagram += message(sequence: 6, payload: inet(family: AF_INET, address: [10, 0, 0, 1], port: 1, inode: 1))  // an earlier dump's
        datagram += message(sequence: 7, payload: inet(family: AF_INET, address: [10, 0, 0, 1], port: 2, inode: 2, state: 1))
        var found: [Listener] = []
        XCTAssertEqual(ListeningSockets.parse(datagram[...], table: .tcp, sequence: 7, into: &found), .more)
        XCTAssertEqual(found.map(\.inode), [41234, 41240])
        XCTAssertEqual(found.map(\.description), ["127.0.0.1:50051", "127.0.0.1:8080"])
        let done = message(type: 3, sequence: 7, payload: [0, 0, 0, 0])
        XCTAssertEqual(ListeningSockets.parse(done[...], table: .tcp, sequence: 7, into: &found), .done)

        found = []
        let v6 = message(sequence: 1, payload: inet(family: AF_INET6, address: [UInt8](repeating: 0, count: 15) + [1], port: 50051, inode: 5001))
            + message(sequence: 1, payload: inet(family: AF_INET6, address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1], port: 80, inode: 5003))
            + done.prefix(8) + [1, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0, 0]
        XCTAssertEqual(ListeningSockets.parse(v6[...], table: .tcp6, sequence: 1, into: &found), .done)
        XCTAssertEqual(found.map(\.description), ["[::1]:50051", "127.0.0.1:80"])
    }

    func testUnixDumpsListNamedStreamListeners() {
        var datagram = message(sequence: 3, payload: unix(name: Array("/run/server.sock".utf8) + [0], inode: 7001))
        datagram += message(sequence: 3, payload: unix(name: [0] + Array("grpc".utf8) + [0] + Array("x".utf8), inode: 7002))
        datagram += message(sequence: 3, payload: unix(name: nil, inode: 7005))
        datagram += message(sequence: 3, payload: unix(name: Array("/run/seq.sock".utf8) + [0], inode: 7006, type: 5))
        datagram += message(type: 3, sequence: 3, payload: [0, 0, 0, 0])
        var found: [Listener] = []
        XCTAssertEqual(ListeningSockets.parse(datagram[...], table: .unix, sequence: 3, into: &found), .done)
        XCTAssertEqual(found.map(\.inode), [7001, 7002])
        XCTAssertEqual(found.map(\.description), ["unix:/run/server.sock", "unix-abstract:grpc@x"], "NULs shown as /proc/net/unix shows them")
    }

    func testBrokenDumpsFail() {
        var found: [Listener] = []
        let error = message(type: 2, sequence: 1, payload: [0xFE, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(ListeningSockets.parse(error[...], table: .tcp, sequence: 1, into: &found), .failed)
        let failedDone = message(type: 3, sequence: 1, payload: [0xFE, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(ListeningSockets.parse(failedDone[...], table: .tcp, sequence: 1, into: &found), .failed)
        let whole = message(sequence: 1, payload: inet(family: AF_INET, address: [127, 0, 0, 1], port: 1, inode: 9))
        XCTAssertEqual(ListeningSockets.parse(whole.dropLast(4), table: .tcp, sequence: 1, into: &found), .failed, "cut short")
        XCTAssertEqual(ListeningSockets.parse(whole.prefix(10), table: .tcp, sequence: 1, into: &found), .failed)
        XCTAssertEqual(found, [])
    }

    func testTheDumpsListWhatProcNetLists() throws {
        // This process's own listeners, through sock_diag and through /proc/net, alike.
        let probe = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue), ListeningSockets.netlinkSockDiag)
        try XCTSkipIf(probe < 0, "no sock_diag here")
        close(probe)
        let v4 = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let v6 = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        let named = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let abstract = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { [v4, v6, named, abstract].forEach { close($0) } }
        var a4 = sockaddr_in()
        a4.sin_family = sa_family_t(AF_INET)
        a4.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        XCTAssertEqual(withUnsafePointer(to: &a4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(v4, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }, 0)
        var a6 = sockaddr_in6()
        a6.sin6_family = sa_family_t(AF_INET6)
        a6.sin6_addr.__in6_u.__u6_addr8.15 = 1
        let v6Bound = withUnsafePointer(to: &a6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(v6, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } } == 0
        let path = "/tmp/discovery-test-\(getpid()).sock"
        unlink(path)
        defer { unlink(path) }
        for (fd, name) in [(named, Array(path.utf8)), (abstract, [0] + Array("discovery-test-\(getpid())".utf8))] {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: name) }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count + (name[0] == 0 ? 0 : 1))
            XCTAssertEqual(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }, 0)
        }
        for fd in [v4, named, abstract] + (v6Bound ? [v6] : []) { XCTAssertEqual(listen(fd, 4), 0) }
        var ours: Set<UInt64> = []
        for fd in [v4, v6, named, abstract] {
            var status = stat()
            XCTAssertEqual(fstat(fd, &status), 0)
            ours.insert(UInt64(status.st_ino))
        }

        let sockets = ListeningSockets()
        let dumped = sockets.read().filter { ours.contains($0.inode) }
        XCTAssertEqual(sockets.fromProc, [], "sock_diag answers")
        var proc: [Listener] = []
        for table in ["tcp", "tcp6"] { proc += Discovery.parseTCP(try XCTUnwrap(Files.text("/proc/self/net/\(table)"))) }
        proc += Discovery.parseUnix(try XCTUnwrap(Files.text("/proc/self/net/unix")))
        XCTAssertEqual(dumped, proc.filter { ours.contains($0.inode) })
        XCTAssertEqual(dumped.count, v6Bound ? 4 : 3)
        XCTAssertTrue(dumped.contains { $0.description == "unix:" + path })
        XCTAssertTrue(dumped.contains { $0.description == "unix-abstract:discovery-test-\(getpid())" })
        // A second read on the same netlink socket.
        XCTAssertEqual(sockets.read().filter { ours.contains($0.inode) }, dumped)
    }
}

