import Glibc

public enum Files {
    /// Reads a whole file of at most `limit` bytes; throws on open/read failure or when larger.
    public static func read(_ path: String, limit: Int = 1 << 20) throws(SystemError) -> [UInt8] {
        let fd = try check("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var status = stat()
        let known = fstat(fd, &status) == 0
        return try read(descriptor: fd, status: known ? status : nil, limit: limit, name: path)
    }

    /// Reads the file at `path` unless a file with its identity is in `seen` (then nil), adding
    /// it: a file reached by two paths (a link, a linked directory) is read once. The identity
    /// comes from the open file, so this costs no stat(2) of its own.
    public static func read(_ path: String, limit: Int, unlessIn seen: inout Set<Identity>) throws(SystemError) -> [UInt8]? {
        let fd = try check("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var status = stat()
        let known = fstat(fd, &status) == 0
        if known && !seen.insert(Identity(status)).inserted { return nil }
        return try read(descriptor: fd, status: known ? status : nil, limit: limit, name: path)
    }

    /// With the status of a regular file, the buffer is sized from it, so that the file takes one
    /// read; the buffer is not zeroed first, as read() fills what is kept.
    private static func read(descriptor fd: Int32, status: stat?, limit: Int, name: String) throws(SystemError) -> [UInt8] {
        let regular = status.map { $0.st_mode & S_IFMT == S_IFREG } ?? false
        let size = min(regular ? Int(status!.st_size) + 1 : 4096, limit + 1)
        var result = [UInt8](unsafeUninitializedCapacity: size) { _, initialized in initialized = size }
        var count = 0
        while true {
            if count == result.count {
                if count > limit { throw SystemError("read \(name)", code: Errno(EFBIG)) }
                let more = min(count, limit + 1 - count)
                result += [UInt8](unsafeUninitializedCapacity: more) { _, initialized in initialized = more }
            }
            let n = try check("read \(name)") {
                result.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            }
            if n == 0 { break }
            count += n
            if regular && count < result.count { break }  // a short read of a regular file is its end
        }
        result.removeSubrange(count...)
        return result
    }

    /// What identifies a file (device and inode), to read a file reached by two paths once.
    public struct Identity: Hashable, Sendable {
        let device: UInt64
        let inode: UInt64

        init(_ status: stat) {
            device = UInt64(status.st_dev)
            inode = UInt64(status.st_ino)
        }
    }

    /// The identity of the file at `path`, following symbolic links; nil when it cannot be reached.
    public static func identity(_ path: String) -> Identity? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return Identity(status)
    }

    /// One name in a directory, with what readdir knows of its type.
    public struct DirectoryEntry: Sendable {
        public let name: String
        public let isDirectory: Bool
        public let isSymbolicLink: Bool
    }

    /// Whether `path` names a regular file itself (not a symbolic link to one).
    public static func isRegularFile(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFREG
    }

    /// The entries of a directory in the order readdir gives them, without "." and ".."; nil when
    /// it cannot be opened.
    public static func entries(of directory: String) -> [DirectoryEntry]? {
        guard let handle = opendir(directory) else { return nil }
        defer { closedir(handle) }
        var entries: [DirectoryEntry] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name == "." || name == ".." { continue }
            let type = Int(entry.pointee.d_type)
            entries.append(DirectoryEntry(name: name, isDirectory: type == Int(DT_DIR), isSymbolicLink: type == Int(DT_LNK)))
        }
        return entries
    }

    /// Where a symbolic link points, as written in the link; nil when `path` is not one.
    public static func linkTarget(_ path: String) -> String? {
        var length = -1
        let target = String(unsafeUninitializedCapacity: Int(PATH_MAX)) { buffer in
            length = buffer.withMemoryRebound(to: CChar.self) { readlink(path, $0.baseAddress!, $0.count) }
            return max(length, 0)
        }
        return length >= 0 ? target : nil
    }

    /// The file's text, or nil when it cannot be read (callers treat a missing file as empty).
    public static func text(_ path: String, limit: Int = 1 << 20) -> String? {
        guard let bytes = try? read(path, limit: limit) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

public enum Environment {
    public static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }

    /// The variable's value, or nil when it is unset or empty (Go's `os.Getenv(name) != ""`).
    public static func nonEmpty(_ name: String) -> String? {
        guard let value = value(name), !value.isEmpty else { return nil }
        return value
    }
}
