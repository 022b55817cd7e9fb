/// A pause between retries that doubles from `first` up to `maximum`, and starts over at
/// `first` when reset: one owner for every retry's timing.
public struct Backoff: Sendable {
    public let first: Int64
    public let maximum: Int64
    /// The pause the next retry waits, in nanoseconds.
    public private(set) var current: Int64

    public init(first: Int64, maximum: Int64) {
        self.first = first
        self.maximum = maximum
        current = first
    }

    /// The pause to wait now; the one after it is twice as long, up to `maximum`.
    public mutating func next() -> Int64 {
        defer { current = min(current.multipliedSaturated(by: 2), maximum) }
        return current
    }

    public mutating func reset() { current = first }
}
