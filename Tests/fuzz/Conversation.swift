import GateProtocol
import HPACK
import Wire

/// A whole HTTP/2 conversation driven by fuzz input: a client and a server connection machine
/// joined by two pipes, and an adversary between them. Each input byte picks a step — deliver
/// some of what one side wrote, open a stream, answer one, reset one, change SETTINGS or windows
/// mid-answer, inject a frame of any shape into either direction, or raw bytes — and after each
/// step both machines' invariants are checked. The streams carry gRPC: a request body that
/// ends is read as the server reads a call's request, and answers are framed as it frames them. Returns the first violation, or nil; a trap is
/// a crash the fuzzer reports.
public enum Conversation {
    public static func run(_ input: [UInt8]) -> String? {
        var script = Script(input)
        let client = HTTP2Connection(role: .client)
        let server = HTTP2Connection(role: .server, limits: .server)
        var toServer: [UInt8] = []
        var toClient: [UInt8] = []
        var clientStreams: [UInt32] = []
        var serverStreams: [UInt32] = []
        var encoder = HPACKEncoder()
        var bodies: [UInt32: [UInt8]] = [:]
        var violation: String?
        toServer += client.takeOutbound()
        toClient += server.takeOutbound()

        func deliver(_ pipe: inout [UInt8], to machine: HTTP2Connection, _ count: Int) {
            let chunk = Array(pipe.prefix(count))
            pipe.removeFirst(chunk.count)
            guard let events = try? machine.receive(chunk) else { return }
            for event in events {
                switch event {
                case .headers(let id, _, _) where machine === server:
                    if !serverStreams.contains(id) { serverStreams.append(id) }
                case .data(let id, let bytes, let end) where machine === server:
                    var body = bodies.removeValue(forKey: id) ?? []
                    if body.count < 1 << 16 { body += bytes }
                    if !end {
                        bodies[id] = body
                    } else if let broken = GRPCServerCall.check(body) {
                        violation = broken
                    }
                case .reset(let id, _), .streamError(let id, _, _):
                    if machine === server { serverStreams.removeAll { $0 == id } } else { clientStreams.removeAll { $0 == id } }
                default:
                    break
                }
            }
        }

        func pick(_ ids: [UInt32]) -> UInt32? { ids.isEmpty ? nil : ids[Int(script.byte()) % ids.count] }

        func frame(_ type: FrameType, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            Frame(type, flags: flags, streamID: stream, payload: payload).serialized()
        }

        func setting(_ id: SettingID, _ value: UInt32) -> [UInt8] {
            frame(.settings, stream: 0, [UInt8(id.rawValue >> 8), UInt8(id.rawValue & 0xFF),
                                         UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
        }

        /// A frame of any type, flags, small stream ID and payload, as an adversary writes it.
        func anyFrame() -> [UInt8] {
            let type = script.byte() % 11
            let flags = script.byte()
            let stream = UInt32(script.byte() % 12)
            var payload = script.bytes(Int(script.byte() % 40))
            if type == FrameType.headers.rawValue && flags & 0x80 == 0 {
                payload = encoder.encode([HeaderField(":method", "POST"), HeaderField(":path", "/x"), HeaderField(":scheme", "http")])
            }
            return Frame(type: type, flags: flags, streamID: stream, payload: payload).serialized()
        }

        let request = [HeaderField(":method", "POST"), HeaderField(":scheme", "http"), HeaderField(":path", Health.checkPath),
                       HeaderField(":authority", "fuzz"), HeaderField("content-type", "application/grpc"), HeaderField("te", "trailers")]

        while !script.done {
            switch script.byte() % 16 {
            case 0: deliver(&toServer, to: server, Int(script.byte()) * 8 + 1)
            case 1: deliver(&toClient, to: client, Int(script.byte()) * 8 + 1)
            case 2:
                if client.canOpenStream { clientStreams.append(client.openStream(headers: request, endStream: script.byte() & 1 == 1)) }
            case 3:
                // A gRPC message, or bytes of any shape.
                if let id = pick(clientStreams) {
                    let bytes = script.bytes(Int(script.byte()))
                    client.sendData(streamID: id, script.byte() & 2 == 0 ? GRPCServerCall.message(bytes) : bytes, endStream: script.byte() & 1 == 1)
                }
            case 4:
                // The server answers: head, a message of any length, trailers; or a part of that.
                if let id = pick(serverStreams) {
                    let parts = script.byte()
                    if parts & 1 != 0 { server.sendHeaders(streamID: id, GRPCServerCall.responseHeaders, endStream: false) }
                    if parts & 2 != 0 {
                        server.sendData(streamID: id, GRPCServerCall.message([UInt8](repeating: 7, count: Int(script.byte()) * 64)), endStream: parts & 4 != 0)
                    }
                    if parts & 8 != 0 {
                        let status = GRPCStatus(rawCode: Int(script.byte()) - 8, message: String(decoding: script.bytes(Int(script.byte() % 16)), as: UTF8.self))
                        server.sendHeaders(streamID: id, parts & 16 != 0 ? GRPCServerCall.trailersOnly(status) : GRPCServerCall.trailers(status), endStream: true)
                    }
                }
            case 5: if let id = pick(clientStreams) { client.reset(streamID: id, code: .cancel) }
            case 6: if let id = pick(serverStreams) { server.reset(streamID: id, code: .enhanceYourCalm) }
            case 7: toServer += anyFrame()
            case 8: toClient += anyFrame()
            // Windows changed between frames, in either direction, to any value.
            case 9: toServer += setting(.initialWindowSize, script.uint32() >> UInt32(script.byte() % 32))
            case 10: toClient += setting(.initialWindowSize, script.uint32() >> UInt32(script.byte() % 32))
            case 11: toServer += frame(.windowUpdate, stream: UInt32(script.byte() % 12), uint32Bytes(script.uint32() >> UInt32(script.byte() % 32)))
            case 12: toClient += frame(.windowUpdate, stream: UInt32(script.byte() % 12), uint32Bytes(script.uint32() >> UInt32(script.byte() % 32)))
            case 13: toClient += setting(.maxConcurrentStreams, UInt32(script.byte() % 4))
            case 14: toServer += script.bytes(Int(script.byte() % 64))
            default:
                // Each side reads what the other wrote so far (or the server stops reading).
                toServer += client.takeOutbound()
                if script.byte() & 1 == 0 { toClient += server.takeOutbound() }
            }
            if let violation { return "server call: \(violation)" }
            for (name, machine) in [("client", client), ("server", server)] {
                if let violation = machine.invariantViolation { return "\(name): \(violation)" }
            }
            // The pipes carry whole frames from each machine; the adversary's are appended
            // between them.
            if toServer.count > 1 << 22 || toClient.count > 1 << 22 { return "a pipe grew past 4 MiB" }
        }
        return nil
    }

    private static func uint32Bytes(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    /// The fuzz input read front to back; zeros once it is used up.
    struct Script {
        let input: [UInt8]
        var index = 0

        init(_ input: [UInt8]) { self.input = input }

        var done: Bool { index >= input.count }

        mutating func byte() -> UInt8 {
            defer { index += 1 }
            return index < input.count ? input[index] : 0
        }

        mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in byte() } }

        mutating func uint32() -> UInt32 { bytes(4).reduce(0) { $0 << 8 | UInt32($1) } }
    }
}
