import Glibc
import SystemCalls

public enum WaitResult: Equatable {
    case ready
    case timedOut
    /// The cancel descriptor (a signalfd) became readable first.
    case cancelled
}

/// Blocks until `fd` is ready for `events`, the deadline passes, or its cancellation arrives.
public func waitFor(_ fd: Int32, events: Int16, until deadline: Deadline) -> WaitResult {
    var fds = [pollfd(fd: fd, events: events, revents: 0)]
    if let cancelFD = deadline.cancelFD { fds.append(pollfd(fd: cancelFD, events: Int16(POLLIN), revents: 0)) }
    while true {
        let n = poll(&fds, nfds_t(fds.count), deadline.pollTimeout)
        if n < 0 && errno == EINTR { continue }
        if fds.count > 1 && fds[1].revents != 0 { return .cancelled }
        if n > 0 && fds[0].revents != 0 { return .ready }
        if deadline.hasPassed { return .timedOut }
        if n < 0 { return .ready }  // poll itself failed; the next I/O call reports why
    }
}
