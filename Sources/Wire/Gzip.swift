import CZlib

/// The zlib linked in, for -version -v.
public let zlibLinkedVersion = String(cString: zlibVersion())

/// gzip for gRPC messages (grpc-encoding: gzip) through zlib. Only loaded when a message is
/// compressed, so a plaintext probe without -gzip never touches zlib.
public enum Gzip {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case zlib(String)
        case tooLarge(limit: Int)

        public var description: String {
            switch self {
            case .zlib(let text): return "gzip: \(text)"
            case .tooLarge(let limit): return "decompressed message larger than max (\(limit))"
            }
        }
    }

    public static func compress(_ input: [UInt8]) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard grpc_init_deflate_init_gzip(&stream) == Z_OK else { throw .zlib("deflateInit2 failed") }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = uInt(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = uInt(outBuf.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw .zlib("deflate failed (\(status))") }
        output.removeLast(Int(stream.avail_out))
        return output
    }

    /// Inflates gzip data, one member or several in a row (their contents concatenated, as Go's
    /// gzip reader reads them), failing as soon as the output would exceed `limit` bytes so that
    /// a small hostile message cannot expand without bound. Bytes after the last member that
    /// are not another member are an error, as is data that ends inside a member.
    public static func decompress(_ input: [UInt8], limit: Int) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard grpc_init_inflate_init_gzip(&stream) == Z_OK else { throw .zlib("inflateInit2 failed") }
        defer { inflateEnd(&stream) }
        var input = input
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        var status: Int32 = Z_OK
        try input.withUnsafeMutableBufferPointer { (inBuf: inout UnsafeMutableBufferPointer<UInt8>) throws(Failure) in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while true {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return outBuf.count - Int(stream.avail_out)
                }
                // Z_BUF_ERROR: no progress was possible, the input ended inside a member.
                if status == Z_BUF_ERROR { throw .zlib("unexpected end of compressed data") }
                if status != Z_OK && status != Z_STREAM_END {
                    throw .zlib(stream.msg.map { String(cString: $0) } ?? "inflate failed (\(status))")
                }
                if output.count + produced > limit { throw .tooLarge(limit: limit) }
                output.append(contentsOf: chunk[0..<produced])
                if status == Z_STREAM_END {
                    if stream.avail_in == 0 { return }
                    // Another member follows (or bytes that must prove to be one).
                    guard inflateReset(&stream) == Z_OK else { throw .zlib("inflateReset failed") }
                    continue
                }
                if produced == 0 && stream.avail_in == 0 { throw .zlib("unexpected end of compressed data") }
            }
        }
        return output
    }
}
