import Glibc
import XCTest
@testable import SystemCalls

final class LogStreamTests: XCTestCase {
    /// A pipe whose buffer is full: a line that cannot go out at once is dropped and counted, and
    /// the count comes first once the pipe has room again.
    func testAFullPipeDropsAndCountsLines() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let log = LogStream(fd: fds[1])
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        let filler = [UInt8](repeating: 0x78, count: 4096)
        while filler.withUnsafeBytes({ write(fds[1], $0.baseAddress, $0.count) }) > 0 {}
        log.line("first")
        log.line("second")
        XCTAssertEqual(log.dropped, 2)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        while read(fds[0], &buffer, buffer.count) > 0 {}  // the reader catches up
        log.line("third")
        XCTAssertEqual(log.dropped, 0)
        let n = read(fds[0], &buffer, buffer.count)
        XCTAssertEqual(String(decoding: buffer.prefix(max(0, n)), as: UTF8.self),
                       "[grpc-init] warning: 2 log lines dropped: stderr was not being read\nthird\n")
    }

    func testALongLineIsCutToWhatAPipeTakesAtOnce() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        LogStream(fd: fds[1]).line(String(repeating: "a", count: 10_000))
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let n = read(fds[0], &buffer, buffer.count)
        XCTAssertEqual(n, LogStream.maxLine)
        XCTAssertTrue(String(decoding: buffer.prefix(n), as: UTF8.self).hasSuffix("...\n"))
    }
}

final class DeadlineTests: XCTestCase {
    func testCappingKeepsTheEarlierInstant() {
        let later = Deadline.after(10_000_000_000)
        let capped = later.capped(at: MonotonicClock.now() - 1)
        XCTAssertTrue(capped.hasPassed)
        XCTAssertEqual(capped.pollTimeout, 0)
        XCTAssertFalse(later.hasPassed)
        XCTAssertEqual(Deadline(Int64.max - 1).pollTimeout, Int32.max, "no overflow for a far deadline")
        XCTAssertEqual(Deadline(Int64.max).pollTimeout, -1, "no deadline: a wait with no timer")
    }
}

final class ProcessArgumentsTests: XCTestCase {
    func testCArgumentsKeepEveryByte() {
        let arguments: [[UInt8]] = [Array("printf".utf8), [0x61, 0xE9, 0x62], [0xFF], []]
        let copied: [[UInt8]] = ProcessArguments.withCArguments(arguments) { pointers in
            XCTAssertNil(pointers.last!, "NULL-terminated")
            return pointers.dropLast().map { Array(UnsafeBufferPointer(start: UnsafeRawPointer($0!).assumingMemoryBound(to: UInt8.self), count: strlen($0!))) }
        }
        XCTAssertEqual(copied, arguments)
        XCTAssertFalse(ProcessArguments.raw().isEmpty, "this process's own argv, from the C library")
    }
}

final class BackoffTests: XCTestCase {
    func testDoublesToItsMaximumAndStartsOver() {
        var backoff = Backoff(first: 100, maximum: 500)
        XCTAssertEqual((0..<5).map { _ in backoff.next() }, [100, 200, 400, 500, 500])
        backoff.reset()
        XCTAssertEqual(backoff.next(), 100)
    }
}
