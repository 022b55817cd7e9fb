import Glibc

/// A failed system call: what was being done, and the errno it failed with.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let code: Int32

    public init(_ operation: String, code: Int32 = errno) {
        self.operation = operation
        self.code = code
    }

    /// The C library's text for `code`, e.g. "connection refused" in Go's lower case style.
    public var reason: String { SystemError.describe(code) }

    public var description: String { "\(operation): \(reason)" }

    public static func describe(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}

/// Runs a system call again while it fails with EINTR; any other result is returned as is.
@inline(__always)
public func retryingOnInterrupt<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

/// Runs a system call that returns -1 on failure, throwing a `SystemError` named `operation`.
@inline(__always)
@discardableResult
public func check<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ call: () -> T) throws(SystemError) -> T {
    let result = retryingOnInterrupt(call)
    if result == -1 { throw SystemError(operation()) }
    return result
}
