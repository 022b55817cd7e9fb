import Addressing
import Glibc
import SystemCalls

/// A socket in the LISTEN state that belongs to the supervised process tree.
public struct Listener: Hashable, Sendable, CustomStringConvertible {
    public enum Address: Hashable, Sendable {
        /// 4 or 16 address bytes in network order, and the port.
        case tcp(bytes: [UInt8], port: UInt16)
        /// A path, or an abstract name (its leading NUL shown as "@" by the kernel).
        case unix(path: String)
    }

    public let address: Address
    /// The socket's inode, which /proc/PID/fd links name as `socket:[INODE]`.
    public let inode: UInt64

    public init(address: Address, inode: UInt64) {
        self.address = address
        self.inode = inode
    }

    /// Where to connect: wildcard listeners (0.0.0.0, ::) over loopback, as the server's own
    /// container reaches it.
    public var target: Target {
        switch address {
        case .tcp(let bytes, let port):
            if bytes.count == 4 {
                return .tcp(host: bytes == [0, 0, 0, 0] ? "127.0.0.1" : Listener.ipv4(bytes), port: port)
            }
            if let mapped = Listener.mappedIPv4(bytes) {
                return .tcp(host: mapped == [0, 0, 0, 0] ? "127.0.0.1" : Listener.ipv4(mapped), port: port)
            }
            return .tcp(host: bytes.allSatisfy { $0 == 0 } ? "::1" : Listener.ipv6(bytes), port: port)
        case .unix(let path):
            return path.hasPrefix("@") ? .unixAbstract(name: String(path.dropFirst())) : .unix(path: path)
        }
    }

    /// As an -addr would name it.
    public var description: String {
        switch target {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:" + path
        case .unixAbstract(let name): return "unix-abstract:" + name
        }
    }

    static func ipv4(_ b: [UInt8]) -> String { b.map { String($0) }.joined(separator: ".") }

    static func mappedIPv4(_ b: [UInt8]) -> [UInt8]? {
        b.count == 16 && b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xFF && b[11] == 0xFF ? Array(b[12...]) : nil
    }

    /// RFC 5952's form: lower-case hex groups, the longest run of two or more zero groups as "::".
    static func ipv6(_ b: [UInt8]) -> String {
        let groups = stride(from: 0, to: 16, by: 2).map { UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]) }
        var best = (start: -1, length: 1)
        var index = 0
        while index < 8 {
            var end = index
            while end < 8 && groups[end] == 0 { end += 1 }
            if end - index > best.length { best = (index, end - index) }
            index = end + 1
        }
        func hex(_ range: ArraySlice<UInt16>) -> String { range.map { String($0, radix: 16) }.joined(separator: ":") }
        guard best.start >= 0 else { return hex(groups[...]) }
        return hex(groups[..<best.start]) + "::" + hex(groups[(best.start + best.length)...])
    }
}

/// Finds the listening sockets of a process tree: the namespace's listening sockets (one
/// sock_diag dump each of TCP, TCP over IPv6 and unix, or /proc/net/tcp, tcp6 and unix where
/// netlink cannot answer), matched against the `socket:[INODE]` links in /proc/PID/fd of each
/// process of the tree. The parsing is pure, for the tests; `ListenerSurvey` does the reading.
public enum Discovery {
    /// Bounds on what one scan reads: a process tree or a socket table larger than these is
    /// read in part, never without end.
    static let maxProcesses = 4096
    static let maxTableBytes = 16 << 20

    public struct Scan: Sendable {
        /// In the order the kernel's tables list them: TCP, TCP over IPv6, then unix.
        public var listeners: [Listener] = []
        /// The process that holds each listener's socket.
        public var owners: [UInt64: pid_t] = [:]
        /// /proc cannot be read: nothing can be found.
        public var procMissing = false
    }

    /// The listeners held by the descendants of `root`, except `excluded` (the agent itself),
    /// with nothing remembered from an earlier scan.
    public static func scan(root: pid_t, excluding excluded: pid_t) -> Scan {
        var survey = ListenerSurvey(root: root, excluding: excluded)
        return survey.scan()
    }

    /// Which of `wanted` the descendants of `root` (except `excluded`) hold, and the first
    /// process found holding each, the tree walked from the root down: a pool's parent before
    /// its workers. The walk ends once every one is found. Nil when a process's descriptors
    /// could not be read for a reason that may pass (descriptors or memory running out): what
    /// the walk did not find may still be the tree's.
    static func holders(of wanted: Set<UInt64>, root: pid_t, excluding excluded: pid_t) -> [UInt64: pid_t]? {
        var found: [UInt64: pid_t] = [:]
        guard !wanted.isEmpty else { return found }
        for pid in descendants(of: root) where pid != excluded {
            let read = forEachSocket(of: pid) { inode in
                if wanted.contains(inode) && found[inode] == nil { found[inode] = pid }
            }
            if !read { return nil }
            if found.count == wanted.count { break }
        }
        return found
    }

    /// The inode of each socket among `pid`'s descriptors, from the links in /proc/PID/fd read
    /// relative to that directory into a small buffer: a walk of thousands of descriptors
    /// makes no string of its own.
    /// False when the directory could not be read for a reason that may pass; a process that has
    /// exited, or whose descriptors are not ours to read, holds nothing we can find.
    @discardableResult
    static func forEachSocket(of pid: pid_t, _ body: (UInt64) -> Void) -> Bool {
        guard let directory = opendir("/proc/\(pid)/fd") else {
            return errno == ENOENT || errno == ESRCH || errno == EACCES || errno == EPERM
        }
        defer { closedir(directory) }
        let fd = dirfd(directory)
        // "socket:[" and at most 20 digits and "]": a longer link is not a socket's.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { link in
            while let entry = readdir(directory) {
                let length = withUnsafePointer(to: &entry.pointee.d_name) { name in
                    name.withMemoryRebound(to: CChar.self, capacity: 1) { name in
                        name[0] == 0x2E ? -1 : readlinkat(fd, name, UnsafeMutableRawPointer(link.baseAddress!).assumingMemoryBound(to: CChar.self), link.count)
                    }
                }
                guard length > 0, length < link.count, let inode = socketInode(UnsafeBufferPointer(rebasing: link[..<length])) else { continue }
                body(inode)
            }
        }
        return true
    }

    /// `socket:[12345]` -> 12345.
    public static func socketInode(_ link: String) -> UInt64? {
        var link = link
        return link.withUTF8 { socketInode($0) }
    }

    static func socketInode(_ link: UnsafeBufferPointer<UInt8>) -> UInt64? {
        let prefix: StaticString = "socket:["
        let count = prefix.utf8CodeUnitCount
        guard link.count > count + 1, link.count <= count + 21, link[link.count - 1] == UInt8(ascii: "]"),
              UnsafeBufferPointer(start: prefix.utf8Start, count: count).elementsEqual(link[..<count]) else { return nil }
        var inode: UInt64 = 0
        for digit in link[count..<(link.count - 1)] {
            guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow) = inode.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow && !carry else { return nil }
            inode = sum
        }
        return inode
    }

    /// The LISTEN rows (state 0A) of /proc/net/tcp or tcp6: each address is printed as 32-bit
    /// words of network-order bytes read in host order, the port in hex.
    public static func parseTCP(_ text: String) -> [Listener] {
        var found: [Listener] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 9, fields[3] == "0A", let inode = UInt64(fields[9]), inode != 0 else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, let port = UInt16(local[1], radix: 16), let bytes = addressBytes(local[0]) else { continue }
            found.append(Listener(address: .tcp(bytes: bytes, port: port), inode: inode))
        }
        return found
    }

    static func addressBytes(_ hex: Substring) -> [UInt8]? {
        guard hex.count == 8 || hex.count == 32 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let end = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<end], radix: 16) else { return nil }
            withUnsafeBytes(of: word) { bytes.append(contentsOf: $0) }
            index = end
        }
        return bytes
    }

    /// The listening stream sockets of /proc/net/unix: flags __SO_ACCEPTCON (0x10000), type
    /// SOCK_STREAM (1), with a path (an unnamed socket cannot be connected to).
    public static func parseUnix(_ text: String) -> [Listener] {
        var found: [Listener] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", maxSplits: 7)
            guard fields.count == 8, let flags = UInt32(fields[3], radix: 16), flags & 0x10000 != 0,
                  fields[4] == "0001", let inode = UInt64(fields[6]) else { continue }
            found.append(Listener(address: .unix(path: String(fields[7])), inode: inode))
        }
        return found
    }

    /// `root`'s descendants, breadth first, from the `children` files of each task (every
    /// thread's, since any thread may fork); where the kernel has no such file, from the parent
    /// field of every /proc/PID/stat.
    static func descendants(of root: pid_t) -> [pid_t] {
        if access("/proc/\(root)/task/\(root)/children", R_OK) != 0 { return descendantsFromStat(of: root) }
        var found: [pid_t] = []
        var queue: [pid_t] = [root]
        var seen: Set<pid_t> = [root]
        while !queue.isEmpty && found.count < maxProcesses {
            let pid = queue.removeFirst()
            for task in Files.entries(of: "/proc/\(pid)/task") ?? [] {
                let text = Files.text("/proc/\(pid)/task/\(task.name)/children", limit: 1 << 16) ?? ""
                for field in text.split(separator: " ") {
                    if let child = pid_t(field.trimmingNewline), seen.insert(child).inserted {
                        found.append(child)
                        queue.append(child)
                    }
                }
            }
        }
        return found
    }

    static func descendantsFromStat(of root: pid_t) -> [pid_t] {
        var parents: [pid_t: pid_t] = [:]
        for entry in Files.entries(of: "/proc") ?? [] {
            guard let pid = pid_t(entry.name), let stat = Files.text("/proc/\(pid)/stat", limit: 4096) else { continue }
            if let ppid = parentPID(stat: stat) { parents[pid] = ppid }
            if parents.count >= maxProcesses * 4 { break }
        }
        var found: [pid_t] = []
        var frontier: Set<pid_t> = [root]
        while !frontier.isEmpty && found.count < maxProcesses {
            let next = parents.filter { frontier.contains($0.value) }.map(\.key)
            found += next
            frontier = Set(next)
        }
        return found
    }

    /// The fourth field of /proc/PID/stat, after the command name in parentheses (which may
    /// itself hold spaces and parentheses).
    public static func parentPID(stat: String) -> pid_t? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }
}

extension Substring {
    fileprivate var trimmingNewline: Substring { last == "\n" ? dropLast() : self }
}

/// Discovery from one scan to the next. Each scan reads the namespace's listening sockets; the
/// tree's descriptors are walked only when a listening socket appears that no walk has
/// classified yet, so that while nothing new listens a scan costs the same for a tree of one
/// process as for one of thousands. A walk classifies every new socket at once: held by the
/// tree (and by which process), or not. A socket that one walk did not find is walked for once
/// more on the next scan before it counts as not the tree's: a process forked during the walk
/// (a server that listens, then daemonizes) is in the tree by then. A socket gone from the
/// tables is forgotten, and sockets are never reclassified: one first seen held only outside
/// the tree and handed into it later is not found (a new listener is a new socket, whoever
/// opens it).
public struct ListenerSurvey {
    public let root: pid_t
    public let excluded: pid_t
    /// The tree's listening sockets, and the process a walk found holding each.
    public private(set) var held: [UInt64: pid_t] = [:]
    /// Listening sockets that two walks found no process of the tree holding.
    public private(set) var foreign: Set<UInt64> = []
    /// Listening sockets that one walk did not find: walked for again on the next scan.
    public private(set) var missedOnce: Set<UInt64> = []
    /// How many times the tree has been walked.
    public private(set) var walks = 0
    private let sockets = ListeningSockets()
    /// Whether /proc has been found (until it is, each scan looks for it).
    private var procFound = false

    public init(root: pid_t, excluding excluded: pid_t) {
        self.root = root
        self.excluded = excluded
    }

    /// The listeners the tree holds now.
    public mutating func scan() -> Discovery.Scan {
        if !procFound {
            procFound = access("/proc/self/net/tcp", R_OK) == 0
            guard procFound else {
        var result = Discovery.Scan()
                result.procMissing = true
                return result
            }
        }
        let listening = sockets.read()
        let (root, excluded) = (root, excluded)
        return classify(listening) { Discovery.holders(of: $0, root: root, excluding: excluded) }
    }

    /// Closes what the scans keep open, until the next scan.
    public func release() { sockets.release() }

    /// Of `listening` (the namespace's listening sockets, in the tables' order), those the tree
    /// holds: `walk` (which of these inodes the tree holds, and where) is called once, with
    /// every socket not classified yet, or not at all when there is none.
    public mutating func classify(_ listening: [Listener], walk: (Set<UInt64>) -> [UInt64: pid_t]?) -> Discovery.Scan {
        let present = Set(listening.lazy.map(\.inode))
        if held.keys.contains(where: { !present.contains($0) }) { held = held.filter { present.contains($0.key) } }
        if foreign.contains(where: { !present.contains($0) }) { foreign.formIntersection(present) }
        if missedOnce.contains(where: { !present.contains($0) }) { missedOnce.formIntersection(present) }
        let unknown = present.filter { held[$0] == nil && !foreign.contains($0) }
        if !unknown.isEmpty {
            walks += 1
            // A walk cut short classifies nothing: the next scan walks again.
            let holders = walk(unknown)
            for inode in unknown where holders != nil {
                if let owner = holders?[inode] {
                    held[inode] = owner
                    missedOnce.remove(inode)
                } else if missedOnce.remove(inode) != nil {
                    foreign.insert(inode)
                } else {
                    missedOnce.insert(inode)
                }
            }
        }
        var result = Discovery.Scan()
        for listener in listening {
            guard let owner = held[listener.inode] else { continue }
            result.listeners.append(listener)
            result.owners[listener.inode] = owner
        }
        return result
    }
}
