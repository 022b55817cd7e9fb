import Glibc

/// An errno value, typed: what a failed system call left, carried as data until a renderer
/// words it (the C library's text, or Go's lower-case form of it).
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// What the last failed call left in errno.
    public static var current: Errno { Errno(errno) }

    /// The C library's text: "Connection refused".
    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }

    /// Go writes errno texts in lower case: "connection refused".
    public var goText: String {
        let text = description
        guard let first = text.first else { return text }
        return first.lowercased() + text.dropFirst()
    }
}

/// A failed system call: what was being done, and the errno it failed with.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let code: Errno

    public init(_ operation: String, code: Errno = .current) {
        self.operation = operation
        self.code = code
    }

    public var description: String { "\(operation): \(code)" }
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
