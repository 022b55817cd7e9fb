import CShim
import Glibc

/// Something the reactor's one poll(2) watches: descriptors, a time it wants a turn at, or both.
/// Sources are state machines: `turn` never blocks, it moves the source forward with what the
/// poll found and returns.
public protocol EventSource: AnyObject {
    /// Appends the descriptors to poll this turn (none is fine).
    func descriptors(into set: inout [pollfd])
    /// When the source wants a turn whatever its descriptors say; nil: never, until they do.
    var wakeAt: Int64? { get }
    /// One turn, after each poll, for every source: `polled` holds its descriptors as it gave
    /// them, with their results (empty when it gave none).
    func turn(_ polled: ArraySlice<pollfd>, now: Int64)
}

/// One event loop for a process: the only poll(2) call site. Every turn it collects each
/// source's descriptors and wake-up time, waits once for the earliest of them, then gives every
/// source its turn. A signalfd may cancel a run: its first signal ends the run at once.
///
/// A process that lives long and sleeps most of the time releases the pages of its code from
/// its resident set once nothing has happened for `releasesCodeAfter` milliseconds of a wait
/// with no deadline (they fault back in when it wakes); waiting a little first keeps a burst of
/// events from paying for the release each time, and after a release the next wait does not
/// settle again until something has happened.
public final class Reactor {
    public enum Outcome: Equatable {
        case done
        /// The deadline passed, or a signal of the cancellation arrived.
        case interrupted(Interruption)
        /// poll(2) itself failed.
        case failed(errno: Errno)
    }

    public private(set) var sources: [EventSource] = []
    /// Signals that end a run (nil: none does; a source may read signals itself).
    public let cancellation: SignalFD?
    /// Milliseconds of quiet before the code is released; nil: never.
    public var releasesCodeAfter: Int32?
    private var released = false

    public init(cancellation: SignalFD? = nil, releasesCodeAfter: Int32? = nil) {
        self.cancellation = cancellation
        self.releasesCodeAfter = releasesCodeAfter
    }

    public func add(_ source: EventSource) {
        if !sources.contains(where: { $0 === source }) { sources.append(source) }
    }

    public func remove(_ source: EventSource) { sources.removeAll { $0 === source } }

    /// Turns until `finished` holds (looked at before each wait), `deadline` passes, or a signal
    /// of the cancellation arrives.
    public func run(until finished: () -> Bool, deadline: Int64 = Int64.max) -> Outcome {
        var fds: [pollfd] = []
        // Where each source's descriptors begin in `fds`, in the order of `turnOrder`.
        var starts: [Int] = []
        var turnOrder = sources
        while true {
            if finished() { return .done }
            let now = MonotonicClock.now()
            if now >= deadline { return .interrupted(.deadline) }
            fds.removeAll(keepingCapacity: true)
            starts.removeAll(keepingCapacity: true)
            turnOrder = sources
            if let cancellation { fds.append(pollfd(fd: cancellation.fd, events: Int16(POLLIN), revents: 0)) }
            var earliest = deadline
            for source in turnOrder {
                starts.append(fds.count)
                source.descriptors(into: &fds)
                if let wake = source.wakeAt { earliest = min(earliest, wake) }
            }
            starts.append(fds.count)
            let n = wait(&fds, timeout: MonotonicClock.pollTimeout(until: earliest))
            if n < 0 {
                let code = errno
                if code != EINTR { return .failed(errno: Errno(code)) }
                continue
            }
            if let cancellation, fds[0].revents != 0, let info = cancellation.next() {
                return .interrupted(.signal(Int32(info.ssi_signo)))
            }
            let after = MonotonicClock.now()
            // A source removed by an earlier one's turn gets no more turns.
            for index in turnOrder.indices where sources.contains(where: { $0 === turnOrder[index] }) {
                turnOrder[index].turn(fds[starts[index]..<starts[index + 1]], now: after)
            }
        }
    }

    private func wait(_ fds: inout [pollfd], timeout: Int32) -> Int32 {
        guard timeout < 0, !released, let settle = releasesCodeAfter else {
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n != 0 { released = false }
            return n
        }
        let n = poll(&fds, nfds_t(fds.count), settle)
        if n != 0 { return n }
        released = true
        let woken = cshim_idle_poll(&fds, nfds_t(fds.count), -1)
        if woken != 0 { released = false }
        return woken
    }
}
