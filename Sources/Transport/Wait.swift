import Glibc
import SystemCalls

public enum WaitResult: Equatable {
    case ready
    case timedOut
    /// The cancel descriptor (a signalfd) became readable first.
    case cancelled
}

/// Blocks until `fd` is ready for `events`, `deadline` passes, or `cancelFD` becomes readable.
public func waitFor(_ fd: Int32, events: Int16, deadline: Int64?, cancelFD: Int32? = nil) -> WaitResult {
    var fds = [pollfd(fd: fd, events: events, revents: 0)]
    if let cancelFD { fds.append(pollfd(fd: cancelFD, events: Int16(POLLIN), revents: 0)) }
    while true {
        let timeout = MonotonicClock.pollTimeout(until: deadline)
        let n = poll(&fds, nfds_t(fds.count), timeout)
        if n < 0 && errno == EINTR { continue }
        if fds.count > 1 && fds[1].revents != 0 { return .cancelled }
        if n > 0 && fds[0].revents != 0 { return .ready }
        if let deadline, MonotonicClock.now() >= deadline { return .timedOut }
        if n < 0 { return .ready }  // poll itself failed; the next I/O call reports why
    }
}
