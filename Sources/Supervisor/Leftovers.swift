import Glibc
import SystemCalls

/// What the child left behind once it has exited, and who is in it: as PID 1, every other
/// process of the namespace (a daemon that called setsid included, which the kernel would
/// otherwise SIGKILL when PID 1 exits); otherwise the child's process group (other processes
/// are not ours).
enum Leftovers: CustomStringConvertible {
    case everyone
    case group(pid_t)

    var description: String {
        switch self {
        case .everyone: return "every process left in the namespace"
        case .group(let pgid): return "processes left in process group \(pgid)"
        }
    }

    /// kill(2)'s target for it.
    private var target: pid_t {
        switch self {
        case .everyone: return -1
        case .group(let pgid): return -pgid
        }
    }

    /// Sends `signo` to them; the failure, unless nobody was left to receive it.
    func signal(_ signo: Int32) -> Errno? {
        kill(target, signo) == 0 || errno == ESRCH ? nil : Errno.current
    }

    /// Whether there is a process to wait for: one still running, or a zombie of ours (it is
    /// reaped as its SIGCHLD comes). A zombie whose parent is outside grpc-init's tree cannot be
    /// reaped here and runs nothing, so it does not count. Without a /proc of this namespace,
    /// every process kill(2) reaches counts.
    /// `ignoring`: a process grpc-init has already SIGKILLed itself (its health agent), reaped as its
    /// SIGCHLD comes: nothing to wait for.
    func remain(ignoring ignored: pid_t? = nil) -> Bool {
        // ESRCH: nobody is left. EPERM: those left are not ours to signal, so not ours to wait
        // for either (a SIGKILL would fail the same way).
        guard kill(target, 0) == 0 else { return false }
        let me = getpid()
        let myName = String(me)
        // /proc mounted from another PID namespace lists other processes under other numbers.
        guard Files.linkTarget("/proc/self") == myName, let entries = Files.entries(of: "/proc") else { return true }
        let ignoredName = ignored.map { String($0) }
        for entry in entries where entry.isDirectory && entry.name != myName && entry.name != ignoredName
            && entry.name.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard let stat = Files.text("/proc/\(entry.name)/stat", limit: 4096), let fields = Leftovers.statFields(stat) else { continue }
            if case .group(let pgid) = self, fields.pgrp != pgid { continue }
            if fields.state != "Z" || fields.ppid == me { return true }
        }
        return false
    }

    /// State, parent and group from /proc/PID/stat ("pid (comm) S ppid pgrp ..."), where the
    /// command may hold spaces and parentheses: the fields start after the last ')'.
    static func statFields(_ stat: String) -> (state: Character, ppid: pid_t, pgrp: pid_t)? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count >= 3, let state = fields[0].first, let ppid = pid_t(fields[1]), let pgrp = pid_t(fields[2]) else { return nil }
        return (state, ppid, pgrp)
    }
}
