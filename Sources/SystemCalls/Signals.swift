import CShim
import Glibc

/// Signal numbers and their names, in the two spellings users meet: Go's description (as the
/// reference probe prints it) and the SIGxxx name (as the supervisor logs it).
public enum Signals {
    public static var realTimeMin: Int32 { cshim_sigrtmin() }
    public static var realTimeMax: Int32 { cshim_sigrtmax() }

    private static let table: [(Int32, String, String)] = [
        (SIGHUP, "HUP", "hangup"), (SIGINT, "INT", "interrupt"), (SIGQUIT, "QUIT", "quit"),
        (SIGILL, "ILL", "illegal instruction"), (SIGTRAP, "TRAP", "trace/breakpoint trap"),
        (SIGABRT, "ABRT", "aborted"), (SIGBUS, "BUS", "bus error"),
        (SIGFPE, "FPE", "floating point exception"), (SIGKILL, "KILL", "killed"),
        (SIGUSR1, "USR1", "user defined signal 1"), (SIGSEGV, "SEGV", "segmentation fault"),
        (SIGUSR2, "USR2", "user defined signal 2"), (SIGPIPE, "PIPE", "broken pipe"),
        (SIGALRM, "ALRM", "alarm clock"), (SIGTERM, "TERM", "terminated"),
        (SIGSTKFLT, "STKFLT", "stack fault"), (SIGCHLD, "CHLD", "child exited"),
        (SIGCONT, "CONT", "continued"), (SIGSTOP, "STOP", "stopped (signal)"),
        (SIGTSTP, "TSTP", "stopped"), (SIGTTIN, "TTIN", "stopped (tty input)"),
        (SIGTTOU, "TTOU", "stopped (tty output)"), (SIGURG, "URG", "urgent I/O condition"),
        (SIGXCPU, "XCPU", "CPU time limit exceeded"), (SIGXFSZ, "XFSZ", "file size limit exceeded"),
        (SIGVTALRM, "VTALRM", "virtual timer expired"), (SIGPROF, "PROF", "profiling timer expired"),
        (SIGWINCH, "WINCH", "window changed"), (SIGIO, "IO", "I/O possible"),
        (SIGPWR, "PWR", "power failure"), (SIGSYS, "SYS", "bad system call"),
    ]

    /// "SIGTERM", "SIGRTMIN+3".
    public static func name(_ signo: Int32) -> String {
        if let entry = table.first(where: { $0.0 == signo }) { return "SIG" + entry.1 }
        if signo >= realTimeMin && signo <= realTimeMax { return "SIGRTMIN+\(signo - realTimeMin)" }
        return "signal \(signo)"
    }

    /// Go's os.Signal text: "terminated", "interrupt".
    public static func goDescription(_ signo: Int32) -> String {
        table.first(where: { $0.0 == signo })?.2 ?? "signal \(signo)"
    }

    /// Parses "TERM", "SIGTERM", "15", "RTMIN+2" (case-insensitive).
    public static func parse(_ text: String) -> Int32? {
        if let n = Int32(text) { return n > 0 && n <= realTimeMax ? n : nil }
        var upper = text.uppercased()
        if upper.hasPrefix("SIG") { upper.removeFirst(3) }
        if let entry = table.first(where: { $0.1 == upper }) { return entry.0 }
        if upper == "RTMIN" { return realTimeMin }
        if upper == "RTMAX" { return realTimeMax }
        // The offset is compared with the span before it is added: any Int32 may be written.
        if upper.hasPrefix("RTMIN+"), let k = Int32(upper.dropFirst(6)), k >= 0, k <= realTimeMax - realTimeMin { return realTimeMin + k }
        if upper.hasPrefix("RTMAX-"), let k = Int32(upper.dropFirst(6)), k >= 0, k <= realTimeMax - realTimeMin { return realTimeMax - k }
        return nil
    }
}

/// A signalfd over a set of signals that are blocked for the process, so they arrive as readable
/// records in the same poll(2) as everything else instead of interrupting the program.
public struct SignalFD {
    public let fd: Int32
    public let previousMask: sigset_t

    public init(signals: [Int32]) throws(SystemError) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var old = sigset_t()
        try check("sigprocmask") { sigprocmask(SIG_BLOCK, &set, &old) }
        previousMask = old
        fd = try check("signalfd") { signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) }
    }

    /// The next pending signal, or nil when none is pending.
    public func next() -> signalfd_siginfo? {
        var info = signalfd_siginfo()
        let n = retryingOnInterrupt { read(fd, &info, MemoryLayout<signalfd_siginfo>.size) }
        return n == MemoryLayout<signalfd_siginfo>.size ? info : nil
    }

    /// Up to `limit` pending signals in one read, in the kernel's order (the lowest number
    /// first, so SIGCHLD before any real-time signal); empty when none is pending. A caller that
    /// takes a bounded batch per turn keeps its deadlines however fast signals are queued.
    public func next(upTo limit: Int) -> [signalfd_siginfo] {
        let size = MemoryLayout<signalfd_siginfo>.size
        var batch = [signalfd_siginfo](repeating: signalfd_siginfo(), count: limit)
        let n = batch.withUnsafeMutableBytes { raw in retryingOnInterrupt { read(fd, raw.baseAddress, raw.count) } }
        batch.removeLast(limit - max(0, n) / size)
        return batch
    }
}
