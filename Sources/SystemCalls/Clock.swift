import Glibc

/// Monotonic time in nanoseconds; deadlines throughout are absolute values of this clock.
public enum MonotonicClock {
    @inline(__always)
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// The deadline `nanoseconds` from now. Saturates: a timeout of hours upon hours (Go durations
    /// reach 292 years) must mean "a long time", not an arithmetic trap.
    public static func deadline(after nanoseconds: Int64) -> Int64 {
        now().addingSaturated(max(0, nanoseconds))
    }

    /// Milliseconds from now until `deadline`, rounded up and clamped for poll(2); -1 waits forever.
    public static func pollTimeout(until deadline: Int64?) -> Int32 {
        // Int64.max is no deadline at all: the wait is then for ever, with no timer.
        guard let deadline, deadline != Int64.max else { return -1 }
        let remaining = deadline.addingSaturated(-now())
        if remaining <= 0 { return 0 }
        let ms = remaining.addingSaturated(999_999) / 1_000_000
        return Int32(min(ms, Int64(Int32.max)))
    }
}

/// Why a wait ended before what it waited for: its deadline passed, or a signal of its
/// cancellation arrived (its number, when known). One type for every wait, from the reactor up
/// to each edge, which words it (the probe as Go does: "context deadline exceeded").
public enum Interruption: Error, Equatable, Sendable {
    case deadline
    case signal(Int32?)
}

/// When a wait must end: an instant of the monotonic clock, and the signals (a signalfd) whose
/// arrival cancels it sooner. One value, passed down through every wait of an operation.
public struct Deadline {
    public let instant: Int64
    public let cancellation: SignalFD?

    public init(_ instant: Int64, cancellation: SignalFD? = nil) {
        self.instant = instant
        self.cancellation = cancellation
    }

    /// `nanoseconds` from now (saturating).
    public static func after(_ nanoseconds: Int64, cancellation: SignalFD? = nil) -> Deadline {
        Deadline(MonotonicClock.deadline(after: nanoseconds), cancellation: cancellation)
    }

    /// The earlier of this deadline and `instant`, with the same cancellation.
    public func capped(at instant: Int64) -> Deadline { Deadline(min(self.instant, instant), cancellation: cancellation) }

    public var hasPassed: Bool { MonotonicClock.now() >= instant }
    /// Milliseconds for poll(2), rounded up.
    public var pollTimeout: Int32 { MonotonicClock.pollTimeout(until: instant) }
}

/// Time arithmetic that cannot trap. Flags and variables accept spans up to Go's largest
/// duration (292 years) and deadlines are instants of the monotonic clock: their sum, or a span
/// scaled from microseconds, can pass Int64's range. Saturated at Int64.max it reads as "never"
/// (the reactor waits for ever, with no timer), which is what such a span means.
extension Int64 {
    /// `self + other`, held at Int64.max or Int64.min instead of overflowing.
    @inline(__always)
    public func addingSaturated(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self * factor`, held at Int64.max or Int64.min instead of overflowing.
    @inline(__always)
    public func multipliedSaturated(by factor: Int64) -> Int64 {
        let (product, overflow) = multipliedReportingOverflow(by: factor)
        return overflow ? ((self < 0) == (factor < 0) ? .max : .min) : product
    }
}

/// The wall clock (CLOCK_REALTIME) in nanoseconds since the Unix epoch: for instants reported
/// to others (a start time), never for deadlines, which follow the monotonic clock.
public enum WallClock {
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec).multipliedSaturated(by: 1_000_000_000).addingSaturated(Int64(ts.tv_nsec))
    }
}
