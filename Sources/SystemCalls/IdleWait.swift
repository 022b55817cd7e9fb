import CShim
import Glibc

/// poll(2) with no timeout for a process that lives long and sleeps most of the time: once
/// nothing has happened for `settle` milliseconds, the pages of its code are dropped from its
/// resident set before the wait goes on (they fault back in when it wakes). Waiting a little
/// first keeps a burst of events from paying for the release each time.
public enum IdleWait {
    public static let settle: Int32 = 1000

    public static func poll(_ fds: inout [pollfd], settle: Int32 = IdleWait.settle) -> Int32 {
        let n = Glibc.poll(&fds, nfds_t(fds.count), settle)
        if n != 0 { return n }
        return cshim_idle_poll(&fds, nfds_t(fds.count), -1)
    }
}
