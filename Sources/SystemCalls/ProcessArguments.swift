import CShim
import Glibc

/// The process's arguments as the C library received them: available without /proc, and byte
/// for byte (an argument that is not UTF-8 must reach the child's exec unchanged).
public enum ProcessArguments {
    public static func raw() -> [[UInt8]] {
        guard let argv = cshim_argv() else { return [] }
        return (0..<Int(cshim_argc())).map { i in
            guard let argument = argv[i] else { return [] }
            return Array(UnsafeBufferPointer(start: UnsafeRawPointer(argument).assumingMemoryBound(to: UInt8.self),
                                             count: strlen(argument)))
        }
    }

    /// NUL-terminated copies for exec, freed by `body`'s caller when it returns.
    public static func withCArguments<R>(_ arguments: [[UInt8]], _ body: (inout [UnsafeMutablePointer<CChar>?]) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { bytes in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(p).copyMemory(from: raw.baseAddress ?? UnsafeRawPointer(p), byteCount: bytes.count)
            }
            p[bytes.count] = 0
            return p
        }
        pointers.append(nil)
        defer { pointers.forEach { $0?.deallocate() } }
        return body(&pointers)
    }
}
