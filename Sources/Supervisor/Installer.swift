import Glibc
import SystemCalls

/// `grpc-init --install DIR`: symlinks the probe names to this binary, so that an image can
/// provide /bin/grpc_health_probe without a second copy.
public enum Installer {
    public static func install(into directory: String?, names: [String]) -> Int32 {
        guard let directory, !directory.isEmpty else {
            Output.line("[grpc-init] error: --install needs a directory, e.g. grpc-init --install /bin")
            return 1
        }
        guard let target = selfPath() else {
            Output.line("[grpc-init] error: cannot find this executable's path: \(Errno.current)")
            return 1
        }
        for name in names {
            let link = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var info = stat()
            if lstat(link, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFLNK else {
                    Output.line("[grpc-init] error: \(link) exists and is not a symlink; not replacing it")
                    return 1
                }
                if unlink(link) != 0 && errno != ENOENT {
                    Output.line("[grpc-init] error: cannot replace \(link): unlink: \(Errno.current)")
                    return 1
                }
            }
            if symlink(target, link) != 0 {
                Output.line("[grpc-init] error: symlink \(link) -> \(target): \(Errno.current)")
                return 1
            }
            Output.line("[grpc-init] installed \(link) -> \(target)")
        }
        return 0
    }

    private static func selfPath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if n > 0 { return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        let argv0 = ProcessArguments.raw().first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        return argv0.hasPrefix("/") ? argv0 : nil
    }
}
