// libFuzzer entry point for scripts/fuzz.sh: a server's bytes into the HPACK decoder, a client
// with a Check in flight, and the protobuf, health and gzip decoders; a client's bytes into the
// connection machine in its server role (answering each request) and the HTTP/1.1 request
// parser. Not a SwiftPM target. Whole conversations are ConversationFuzz.swift's.
import GateProtocol
import HPACK
import Wire

// Modes by the first byte: 0 HPACK decoder alone; 1 a whole server response to three calls
// (two Checks and a Watch; a chunk length of 255 cancels one of them instead), in chunks;
// 2 protobuf/health decoding; 3 the server side: the HTTP/2 preface then chunks into the
// connection machine as a server, each request answered; 4 HTTP/1.1 request heads.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 1 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 5 {
    case 0:
        var decoder = HPACKDecoder()
        var i = 0
        while i < bytes.count {
            let n = min(Int(bytes[i]) + 1, bytes.count - i - 1)
            if n <= 0 { break }
            _ = try? decoder.decode(Array(bytes[(i + 1)...(i + n)]))
            i += n + 1
        }
    case 1:
        let client = GRPCClient(GRPCClient.Settings(authority: "localhost:1", userAgent: Array("fuzz".utf8)))
        let call = client.startCall(path: Health.checkPath, timeoutNanoseconds: 1_000_000_000, compress: bytes.first.map { $0 & 1 == 1 } ?? false,
                                    request: Health.request(service: ""))
        let calls = [call, client.startCall(path: Health.watchPath, serverStreaming: true, request: []),
                     client.startCall(path: Health.checkPath, request: Health.request(service: "svc"))]
        var cancelled = 0
        _ = client.connection.takeOutbound()
        // A valid preface-SETTINGS start most of the time, so the fuzzer reaches the streams.
        let settings: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0]
        client.receive(settings)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 255 {
                client.cancel(calls[cancelled % calls.count], GRPCStatus(.deadlineExceeded))
                cancelled += 1
                i += 1
                continue
            }
            let n = min(Int(bytes[i]) * 4 + 1, bytes.count - i - 1)
            if n <= 0 { break }
            client.receive(Array(bytes[(i + 1)...(i + n)]))
            if let violation = client.connection.invariantViolation { fatalError(violation) }
            _ = client.connection.takeOutbound()
            i += n + 1
        }
        client.transportClosed("eof")
        for each in calls {
            while let m = each.nextMessage() { _ = try? Health.decodeResponse(m) }
            _ = each.status?.description
        }
        _ = client.outstanding
    case 3:
        let server = HTTP2Connection(role: .server, limits: .server)
        var i = 0
        var first = true
        while i < bytes.count {
            let n = min(Int(bytes[i]) * 4 + 1, bytes.count - i - 1)
            if n <= 0 { break }
            let chunk = Array(bytes[(i + 1)...(i + n)])
            for event in (try? server.receive(first ? HTTP2Connection.preface + chunk : chunk)) ?? [] {
                if case .data(let stream, let body, true) = event {
                    _ = try? Health.decodeRequest(Array(body.dropFirst(5)))
                    server.sendHeaders(streamID: stream, [HeaderField(":status", "200")], endStream: false)
                    server.sendData(streamID: stream, [0, 0, 0, 0, 2, 8, 1], endStream: false)
                    server.sendHeaders(streamID: stream, [HeaderField("grpc-status", "0")], endStream: true)
                }
            }
            if let violation = server.invariantViolation { fatalError(violation) }
            first = false
            _ = server.takeOutbound()
            i += n + 1
        }
    case 4:
        if case .request(let request, _) = HTTP1Request.parse(bytes, limit: 8192) { _ = request.parameter("service") }
        _ = decodeGRPCTimeout(String(decoding: bytes.prefix(12), as: UTF8.self))
    default:
        var reader = ProtobufReader(bytes)
        while let f = try? reader.next() { _ = f.bytes.count }
        _ = try? Health.decodeResponse(bytes)
        _ = try? Gzip.decompress(bytes, limit: 1 << 20)
    }
    return 0
}
