import Glibc
import SystemCalls

/// The processes of one process group, as /proc lists them: what the supervisor must still wait
/// for once the child has exited.
enum ProcessGroup {
    /// Whether the group has a process to wait for: one still running, or a zombie of ours
    /// (it is reaped as its SIGCHLD comes). A zombie whose parent is outside grpc-init's tree
    /// cannot be reaped here and does not count. Without /proc, every member counts, as
    /// kill(-pgid, 0) tells.
    static func hasProcessesToWaitFor(_ pgid: pid_t) -> Bool {
        guard kill(-pgid, 0) == 0 else { return false }
        guard let entries = Files.entries(of: "/proc") else { return true }
        let me = getpid()
        for entry in entries where entry.isDirectory && entry.name.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard let stat = Files.text("/proc/\(entry.name)/stat", limit: 4096), let fields = statFields(stat),
                  fields.pgrp == pgid else { continue }
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
