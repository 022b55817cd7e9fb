import Flags
import GateProtocol
import HPACK

/// The server's side of gRPC's framing (PROTOCOL-HTTP2.md) for unary and server-streaming
/// calls: the request message in, response messages and the status out. Sans-IO: header lists
/// and DATA payloads, which the HTTP/2 machine carries.
public enum GRPCServerCall {
    /// The one request message of a call whose body arrived whole: uncompressed and exactly
    /// one length-prefixed message, else the status to refuse the call with.
    public static func request(from body: [UInt8], maxMessageSize: Int = 4 << 20) -> Result<[UInt8], GRPCStatus> {
        guard body.count >= 5 else {
            return .failure(GRPCStatus(.internalError, "grpc: a request of \(body.count) bytes holds no message"))
        }
        guard body[0] == 0 else {
            return .failure(GRPCStatus(.unimplemented, "grpc: compressed requests are not accepted (flag \(body[0]))"))
        }
        let length = Int(readUInt32(body, at: 1))
        guard length <= maxMessageSize else {
            return .failure(GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(length) vs. \(maxMessageSize))"))
        }
        guard length == body.count - 5 else {
            return .failure(GRPCStatus(.internalError, length < body.count - 5
                ? "grpc: more than one request message for a unary or server-streaming method"
                : "grpc: the request message is cut short (\(body.count - 5) of \(length) bytes)"))
        }
        return .success(Array(body[5...]))
    }

    /// The response headers that open a call's answer.
    public static let responseHeaders = [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")]

    /// A response message as a DATA payload: uncompressed, length-prefixed.
    public static func message(_ bytes: [UInt8]) -> [UInt8] {
        var framed: [UInt8] = [0]
        framed.reserveCapacity(5 + bytes.count)
        appendUInt32(UInt32(truncatingIfNeeded: bytes.count), to: &framed)
        framed.append(contentsOf: bytes)
        return framed
    }

    /// The trailers that end a call after its headers.
    public static func trailers(_ status: GRPCStatus) -> [HeaderField] {
        var fields = [HeaderField("grpc-status", String(status.rawCode))]
        if !status.message.isEmpty { fields.append(HeaderField("grpc-message", percentEncoded(escapingControlCharacters(status.message)))) }
        return fields
    }

    /// A call refused before any answer: status and trailers in one header list.
    public static func trailersOnly(_ status: GRPCStatus) -> [HeaderField] { responseHeaders + trailers(status) }

    /// grpc-message's encoding: printable ASCII except '%' as is, the rest %XX.
    public static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The fuzzers' invariant for a request body: it is one message whose framing gives back
    /// exactly the body, or it is refused with a status that is not OK. Nil when it holds.
    public static func check(_ body: [UInt8]) -> String? {
        switch request(from: body) {
        case .success(let one): return GRPCServerCall.message(one) == body ? nil : "a request's message does not frame back to its body"
        case .failure(let status): return status.code == .ok ? "a request refused with OK" : nil
        }
    }
}
