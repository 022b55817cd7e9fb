import Glibc
import XCTest
@testable import SystemCalls

final class FileDescriptorTests: XCTestCase {
    private func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }

    private func openNull() throws -> FileDescriptor { try FileDescriptor.open("/dev/null", O_RDWR) }

    /// close() closes it once: the number, reused by the next open, is not closed again when
    /// the owner's scope ends.
    func testCloseClosesOnceAndTheDeinitDoesNotCloseAgain() throws {
        var reused: Int32 = -1
        do {
            let fd = try openNull()
            let number = fd.rawValue
            try fd.close()
            XCTAssertFalse(isOpen(number))
            reused = open("/dev/null", O_RDONLY | O_CLOEXEC)
            XCTAssertEqual(reused, number, "the lowest free number is the one just closed")
        }
        XCTAssertTrue(isOpen(reused), "closed a second time by the owner it was taken from")
        close(reused)
    }

    func testTheOwnersScopeEndClosesIt() throws {
        var number: Int32 = -1
        do {
            let fd = try openNull()
            number = fd.rawValue
            XCTAssertTrue(isOpen(number))
        }
        XCTAssertFalse(isOpen(number))
    }

    func testReleaseHandsTheNumberOnOpen() throws {
        let number = try openNull().release()
        XCTAssertTrue(isOpen(number))
        close(number)
    }

    func testCloseAfterReturnsTheBodysValueAndCloses() throws {
        let fd = try openNull()
        let number = fd.rawValue
        let written = try fd.closeAfter { fd throws(SystemError) in try fd.write([1, 2, 3]) }
        XCTAssertEqual(written, 3)
        XCTAssertFalse(isOpen(number))
    }

    /// The body's error is the one thrown, and the descriptor is closed all the same.
    func testCloseAfterClosesWhenTheBodyThrows() throws {
        let fd = try openNull()
        let number = fd.rawValue
        do throws(SystemError) {
            try fd.closeAfter { _ throws(SystemError) in throw SystemError("body", code: Errno(EIO)) }
            XCTFail("closeAfter returned")
        } catch {
            XCTAssertEqual(error, SystemError("body", code: Errno(EIO)))
        }
        XCTAssertFalse(isOpen(number))
    }

    func testOpenFailureNamesTheCallAndErrno() {
        do throws(SystemError) {
            _ = try FileDescriptor.open("/nonexistent/x", O_RDONLY)
            XCTFail("opened")
        } catch {
            XCTAssertEqual(error.description, "open: No such file or directory")
        }
    }

    /// A pipe's ends, each closed with its owner; the non-blocking end does not block.
    func testPipeEndsAreOwnedAndOneEndDoesNotBlock() throws {
        var numbers: (Int32, Int32) = (-1, -1)
        do {
            let ends = try FileDescriptor.pipe(nonblockingEnd: 0)
            numbers = (ends.read.rawValue, ends.write.rawValue)
            var byte: UInt8 = 0
            XCTAssertEqual(read(ends.read.rawValue, &byte, 1), -1)
            XCTAssertEqual(errno, EAGAIN)
            XCTAssertEqual(fcntl(ends.write.rawValue, F_GETFL) & O_NONBLOCK, 0)
            XCTAssertEqual(fcntl(ends.read.rawValue, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        }
        XCTAssertFalse(isOpen(numbers.0))
        XCTAssertFalse(isOpen(numbers.1))
    }

    /// A write to a pipe nobody reads fails with EPIPE, and the SIGPIPE it raised (blocked, as
    /// in a process that reads signals from a signalfd) is taken back, not left to be read.
    func testAWriteToAClosedPipeTakesItsSIGPIPEBack() throws {
        var block = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGPIPE)
        var old = sigset_t()
        XCTAssertEqual(pthread_sigmask(SIG_BLOCK, &block, &old), 0)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        let ends = try FileDescriptor.pipe(nonblockingEnd: 1)
        try ends.read.close()
        do throws(SystemError) {
            _ = try ends.write.write([0x78])
            XCTFail("written")
        } catch {
            XCTAssertEqual(error, SystemError("write", code: Errno(EPIPE)))
        }
        var pending = sigset_t()
        XCTAssertEqual(sigpending(&pending), 0)
        XCTAssertEqual(sigismember(&pending, SIGPIPE), 0)
    }
}
