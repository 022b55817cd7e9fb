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

final class LogStreamCutLineTests: XCTestCase {
    /// A stream socket with a small buffer takes a long line only in part: the rest goes out
    /// before anything else (when the socket has room, or in front of the next line), so the
    /// reader sees whole lines only.
    func testALineASocketTookInPartIsFinishedFirst() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        var least: Int32 = 1
        XCTAssertEqual(setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &least, socklen_t(MemoryLayout<Int32>.size)), 0)
        let log = LogStream(fd: fds[1], completesCutLines: true) { "dropped \($0)" }
        let long = String(repeating: "l", count: 3_800)
        var sent: [String] = []
        // Short lines, then a long one, until the socket takes a line only in part.
        for i in 0..<64 where log.waitingDescriptor == nil {
            let line = i % 3 == 2 ? long : "short \(i)"
            log.line(line)
            sent.append(line)
        }
        XCTAssertNotNil(log.waitingDescriptor, "the socket took a line in part")
        log.line("next")
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        for _ in 0..<1_000 where log.waitingDescriptor != nil {
            let n = recv(fds[0], &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { received += buffer.prefix(n) }
            log.writable()
        }
        XCTAssertNil(log.waitingDescriptor)
        log.line("last")
        while true {
            let n = recv(fds[0], &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n <= 0 { break }
            received += buffer.prefix(n)
        }
        let lines = String(decoding: received, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.last, "", "ends with a newline")
        for line in lines.dropLast() {
            XCTAssertTrue(line == long || line.hasPrefix("short ") || line.hasPrefix("dropped ") || line == "last", "a whole line: \(line.prefix(40))")
        }
        XCTAssertEqual(lines.dropLast().last, "last")
        XCTAssertTrue(lines.contains(Substring(long)))
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

    /// Spans up to Go's largest duration, and instants of the clock, never trap when summed.
    func testSumsAndProductsSaturate() {
        XCTAssertEqual(Int64.max.addingSaturated(1), .max)
        XCTAssertEqual(Int64.max.addingSaturated(.max), .max)
        XCTAssertEqual(Int64.min.addingSaturated(-1), .min)
        XCTAssertEqual(Int64.min.addingSaturated(.min), .min)
        XCTAssertEqual(Int64.max.addingSaturated(.min), -1, "no overflow, the plain sum")
        XCTAssertEqual(Int64(5).addingSaturated(-7), -2)
        XCTAssertEqual(MonotonicClock.now().addingSaturated(.max), .max)
        XCTAssertEqual(Int64.max.multipliedSaturated(by: 2), .max)
        XCTAssertEqual(Int64.max.multipliedSaturated(by: -2), .min)
        XCTAssertEqual(Int64.min.multipliedSaturated(by: -1), .max)
        XCTAssertEqual(Int64.min.multipliedSaturated(by: 2), .min)
        XCTAssertEqual(Int64(-3).multipliedSaturated(by: .max), .min)
        XCTAssertEqual(Int64(9_223_372_036_854_775).multipliedSaturated(by: 1_000), 9_223_372_036_854_775_000)
        XCTAssertEqual(Int64(9_223_372_036_854_776).multipliedSaturated(by: 1_000), .max, "microseconds past the range")
        XCTAssertEqual(Int64(0).multipliedSaturated(by: .min), 0)
    }

    func testDeadlinesAtTheEndsOfTheRange() {
        XCTAssertEqual(MonotonicClock.deadline(after: .max), .max)
        XCTAssertEqual(Deadline.after(.max).pollTimeout, -1, "Go's largest duration: a wait with no timer")
        XCTAssertFalse(Deadline.after(.max).hasPassed)
        let now = MonotonicClock.now()
        let past = MonotonicClock.deadline(after: .min)
        XCTAssertTrue(past >= now && past <= MonotonicClock.now(), "a negative span is now")
        XCTAssertEqual(Deadline.after(.min).pollTimeout, 0)
        XCTAssertEqual(Deadline(.min).pollTimeout, 0, "the earliest instant has passed")
        XCTAssertEqual(Deadline(Int64.max / 2).pollTimeout, Int32.max, "far, not never: the longest poll")
        XCTAssertTrue((0...1).contains(Deadline.after(1).pollTimeout), "rounded up to 1 ms, or passed")
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

    func testDoublingSaturatesAtTheLargestMaximum() {
        var backoff = Backoff(first: Int64.max / 2 + 1, maximum: .max)
        XCTAssertEqual((0..<3).map { _ in backoff.next() }, [Int64.max / 2 + 1, .max, .max])
    }
}

final class SignalNameTests: XCTestCase {
    func testRealTimeOffsetsAreCheckedBeforeTheyAreAdded() {
        let (low, high) = (Signals.realTimeMin, Signals.realTimeMax)
        XCTAssertEqual(Signals.parse("RTMIN+2"), low + 2)
        XCTAssertEqual(Signals.parse("SIGRTMAX-1"), high - 1)
        XCTAssertEqual(Signals.parse("RTMIN+\(high - low)"), high)
        XCTAssertEqual(Signals.parse("RTMAX-\(high - low)"), low)
        for bad in ["RTMIN+\(high - low + 1)", "RTMAX-\(high - low + 1)", "SIGRTMIN+2147483647", "RTMAX--2147483648",
                    "RTMIN+-3", "RTMAX--1", "RTMIN+-2147483648", "RTMAX-2147483647"] {
            XCTAssertNil(Signals.parse(bad), bad)
        }
    }
}
