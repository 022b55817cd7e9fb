import CShim
import Glibc

/// poll(2) for a process that lives long and sleeps most of the time: a wait with no timeout,
/// once nothing has happened for `settle` milliseconds, drops the pages of the process's code
/// from its resident set before it goes on (they fault back in when it wakes). Waiting a little
/// first keeps a burst of events from paying for the release each time; after a release, the
/// next wait with no timeout does not settle again until something has happened.
public struct IdleWait {
    public static let settle: Int32 = 1000

    /// Milliseconds of quiet before the code is released; nil: never.
    public var settle: Int32?
    /// The code pages were released and nothing has happened since.
    private var released = false

    public init(settle: Int32? = IdleWait.settle) { self.settle = settle }

    /// poll(2) over `fds` for at most `timeout` milliseconds (-1: no timeout).
    public mutating func poll(_ fds: inout [pollfd], timeout: Int32) -> Int32 {
        guard timeout < 0, !released, let settle else {
            let n = Glibc.poll(&fds, nfds_t(fds.count), timeout)
            if n != 0 { released = false }
            return n
        }
        let n = Glibc.poll(&fds, nfds_t(fds.count), settle)
        if n != 0 { return n }
        released = true
        let woken = cshim_idle_poll(&fds, nfds_t(fds.count), -1)
        if woken != 0 { released = false }
        return woken
    }
}
