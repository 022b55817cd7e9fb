import Addressing
import Agent
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
}
