import Glibc
import SystemCalls

/// The network namespace's listening sockets, as the kernel lists them: TCP, TCP over IPv6,
/// then unix stream sockets with a name. Each comes from a sock_diag dump of the sockets in the
/// LISTEN state, which costs the kernel what there is to list; a read of /proc/net/tcp walks
/// every bucket of the connection hash table, which namespaces share (unless
/// net.ipv4.tcp_child_ehash_entries gives them their own) and which is sized for the node's
/// memory, whatever the namespace holds. A table netlink does not answer for (a
/// sandbox without sock_diag, a kernel without inet_diag) is read from /proc/net from then on.
/// The netlink socket stays open from one read to the next, until `release`.
final class ListeningSockets {
    enum Table: CaseIterable, Sendable {
        case tcp, tcp6, unix

        var procPath: String {
            switch self {
            case .tcp: return "/proc/self/net/tcp"
            case .tcp6: return "/proc/self/net/tcp6"
            case .unix: return "/proc/self/net/unix"
            }
        }
    }

    /// How far a dump has come after one datagram.
    enum Progress: Equatable, Sendable {
        case more
        case done
        case failed
    }

    /// Tables that netlink did not dump `giveUpAfter` times in a row: read from /proc/net from
    /// then on. A failure that may pass (descriptors running out, a full socket buffer) costs one
    /// scan read from /proc, not every scan after it.
    private(set) var fromProc: Set<Table> = []
    private var failures: [Table: Int] = [:]
    static let giveUpAfter = 3
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var sequence: UInt32 = 0

    deinit { release() }

    /// Closes the netlink socket (the next read opens another).
    func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    static let netlinkSockDiag: Int32 = 4
    static let sockDiagByFamily: UInt16 = 20
    static let messageDone: UInt16 = 3
    static let messageError: UInt16 = 2
    /// NLM_F_REQUEST | NLM_F_DUMP.
    static let dumpFlags: UInt16 = 0x301
    /// 1 << TCP_LISTEN: unix sockets use the TCP states too.
    static let listenStates: UInt32 = 1 << 10
    static let headerSize = 16
    /// struct inet_diag_msg.
    static let inetMessageSize = 72
    /// struct unix_diag_msg.
    static let unixMessageSize = 16
    static let unixShowName: UInt32 = 1
    static let unixDiagName: UInt16 = 0
    /// A dump's datagrams are at most 32 KiB; a larger buffer is never cut short.
    static let bufferSize = 1 << 16

    func read() -> [Listener] {
        var all: [Listener] = []
        if fd < 0 && fromProc.count < Table.allCases.count {
            fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), ListeningSockets.netlinkSockDiag)
            if fd < 0 { for table in Table.allCases { failed(table) } }
        }
        for table in Table.allCases {
            if fd >= 0 && !fromProc.contains(table) {
                if let found = dump(table) {
                    failures[table] = nil
                    all += found
                    continue
                }
                failed(table)
                // What is left of a failed dump must not be read as the next table's answer.
                release()
            }
            guard let text = Files.text(table.procPath, limit: Discovery.maxTableBytes) else { continue }
            all += table == .unix ? Discovery.parseUnix(text) : Discovery.parseTCP(text)
        }
        return all
    }

    private func failed(_ table: Table) {
        let count = (failures[table] ?? 0) + 1
        failures[table] = count
        if count >= ListeningSockets.giveUpAfter { fromProc.insert(table) }
    }

    /// One table's dump: nil when netlink does not give it whole and well-formed; a dump larger
    /// than the bound is taken in part, as a /proc table would be.
    private func dump(_ table: Table) -> [Listener]? {
        sequence &+= 1
        let request = ListeningSockets.request(table, sequence: sequence)
        // Each dump is read to its end; should one not have been, its rest has an earlier
        // sequence number and is skipped.
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard sent == request.count else { return nil }
        if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: ListeningSockets.bufferSize) }
        var found: [Listener] = []
        var total = 0
        // The kernel queues each part of a dump before the call that asks for it returns (the
        // first in send, each next one in the recv before it), so none of these calls waits.
        while total < Discovery.maxTableBytes {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_TRUNC)) }
            guard count > 0, count <= buffer.count else { return nil }
            total += count
            switch ListeningSockets.parse(buffer[..<count], table: table, sequence: sequence, into: &found) {
            case .more: continue
            case .done: return found
            case .failed: return nil
            }
        }
        // Cut at the bound: the rest of the dump is still queued, and the next request on this
        // socket would find the dump under way. A new socket for the next one.
        release()
        return found
    }

    /// The request for a dump of `table`'s listening sockets: a netlink header, then struct
    /// inet_diag_req_v2 or struct unix_diag_req, in host byte order.
    static func request(_ table: Table, sequence: UInt32) -> [UInt8] {
        var payload: [UInt8] = []
        switch table {
        case .tcp, .tcp6:
            payload = [UInt8(table == .tcp ? AF_INET : AF_INET6), UInt8(IPPROTO_TCP), 0, 0]
            append(listenStates, to: &payload)
            payload += [UInt8](repeating: 0, count: 48)  // struct inet_diag_sockid: any
        case .unix:
            payload = [UInt8(AF_UNIX), 0, 0, 0]
            append(listenStates, to: &payload)
            append(UInt32(0), to: &payload)  // any inode
            append(unixShowName, to: &payload)
            payload += [UInt8](repeating: 0, count: 8)  // cookie
        }
        var message: [UInt8] = []
        append(UInt32(headerSize + payload.count), to: &message)
        append(sockDiagByFamily, to: &message)
        append(dumpFlags, to: &message)
        append(sequence, to: &message)
        append(UInt32(0), to: &message)  // to the kernel
        return message + payload
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value) { bytes += $0 }
    }

    /// The listening sockets in one datagram of a dump of `table` (messages of another
    /// sequence, left from an earlier request, are skipped): `.done` at its end, `.failed` on
    /// an error or a message that does not fit.
    static func parse(_ datagram: ArraySlice<UInt8>, table: Table, sequence: UInt32, into found: inout [Listener]) -> Progress {
        datagram.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                guard bytes.count - offset >= headerSize else { return .failed }
                let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                let type = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
                let seq = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
                guard length >= headerSize, length <= bytes.count - offset else { return .failed }
                let payload = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerSize)..<(offset + length)])
                offset += min((length + 3) & ~3, bytes.count - offset)
                guard seq == sequence else { continue }
                switch type {
                case messageDone:
                    // Since Linux 4.x the end carries the dump's error, if any.
                    if payload.count >= 4 && payload.loadUnaligned(as: Int32.self) < 0 { return .failed }
                    return .done
                case messageError:
                    return .failed
                case sockDiagByFamily:
                    guard let listener = table == .unix ? unixListener(payload) : tcpListener(payload, table: table) else { continue }
                    found.append(listener)
                default:
                    continue
                }
            }
            return .more
        }
    }

    /// struct inet_diag_msg: the family, the state, the source port (network order) and
    /// address (4 or 16 bytes, network order), the inode.
    static func tcpListener(_ message: UnsafeRawBufferPointer, table: Table) -> Listener? {
        guard message.count >= inetMessageSize, message[1] == 10 else { return nil }
        let size = table == .tcp ? 4 : 16
        guard Int32(message[0]) == (table == .tcp ? AF_INET : AF_INET6) else { return nil }
        let port = UInt16(message[4]) << 8 | UInt16(message[5])
        let inode = UInt64(message.loadUnaligned(fromByteOffset: 68, as: UInt32.self))
        guard inode != 0 else { return nil }
        return Listener(address: .tcp(bytes: Array(message[8..<(8 + size)]), port: port), inode: inode)
    }

    /// struct unix_diag_msg, then its attributes: a listening stream socket with a name (its
    /// path, or an abstract name shown as /proc/net/unix shows it: "@" for each NUL).
    static func unixListener(_ message: UnsafeRawBufferPointer) -> Listener? {
        guard message.count >= unixMessageSize, Int32(message[0]) == AF_UNIX, message[1] == UInt8(SOCK_STREAM.rawValue),
              message[2] == 10 else { return nil }
        let inode = UInt64(message.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        var offset = unixMessageSize
        while message.count - offset >= 4 {
            let length = Int(message.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = message.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)
            guard length >= 4, length <= message.count - offset else { return nil }
            if type == unixDiagName {
                let name = message[(offset + 4)..<(offset + length)]
                guard let first = name.first else { return nil }
                let path: String
                if first == 0 {
                    path = "@" + String(decoding: name.dropFirst().map { $0 == 0 ? UInt8(ascii: "@") : $0 }, as: UTF8.self)
                } else {
                    path = String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
                }
                return Listener(address: .unix(path: path), inode: inode)
            }
            offset += (length + 3) & ~3
        }
        return nil
    }
}
