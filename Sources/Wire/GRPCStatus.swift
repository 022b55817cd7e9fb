import Flags
import GateProtocol

extension GRPCStatus {
    /// The status for a stream reset with an HTTP/2 error code (PROTOCOL-HTTP2.md's mapping).
    public static func fromReset(_ code: HTTP2ErrorCode) -> GRPCStatus {
        let mapped: GRPCStatusCode
        switch code {
        case .refusedStream: mapped = .unavailable
        case .cancel: mapped = .canceled
        case .enhanceYourCalm: mapped = .resourceExhausted
        case .inadequateSecurity: mapped = .permissionDenied
        case .flowControlError: mapped = .resourceExhausted
        default: mapped = .internalError
        }
        return GRPCStatus(mapped, "stream terminated by RST_STREAM with error code: \(code)")
    }

    /// The status for a response whose HTTP status is not 200 (gRPC's HTTP-to-gRPC mapping).
    public static func fromHTTPStatus(_ status: String) -> GRPCStatus {
        let mapped: GRPCStatusCode
        switch status {
        case "400": mapped = .internalError
        case "401": mapped = .unauthenticated
        case "403": mapped = .permissionDenied
        case "404": mapped = .unimplemented
        case "429", "502", "503", "504": mapped = .unavailable
        default: mapped = .unknown
        }
        return GRPCStatus(mapped, "unexpected HTTP status code received from server: \(status)")
    }
}

/// grpc-message is percent-encoded (PROTOCOL-HTTP2.md); malformed escapes are kept as they are.
public func percentDecode(_ text: String) -> String {
    let bytes = Array(text.utf8)
    guard bytes.contains(UInt8(ascii: "%")) else { return text }
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = ASCII.hexDigitValue(bytes[i + 1]), let lo = ASCII.hexDigitValue(bytes[i + 2]) {
            out.append(hi << 4 | lo)
            i += 3
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// grpc-timeout (PROTOCOL-HTTP2.md): at most 8 digits and a unit, rounded up to the unit.
public func encodeGRPCTimeout(nanoseconds: Int64) -> String {
    if nanoseconds <= 0 { return "0n" }
    let limit: Int64 = 99_999_999
    let units: [(Int64, String)] = [(1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"), (3_600_000_000_000, "H")]
    for (size, unit) in units {
        // Rounded up without adding first: timeouts reach Int64.max.
        let value = nanoseconds / size + (nanoseconds % size == 0 ? 0 : 1)
        if value <= limit { return "\(value)\(unit)" }
    }
    return "\(limit)H"
}

/// grpc-timeout's value (PROTOCOL-HTTP2.md: at most 8 digits and a unit) in nanoseconds; nil
/// when malformed.
public func decodeGRPCTimeout(_ text: String) -> Int64? {
    guard let unit = text.last, text.count >= 2, text.count <= 9, let value = Int64(text.dropLast()), value >= 0 else { return nil }
    let scale: Int64
    switch unit {
    case "n": scale = 1
    case "u": scale = 1_000
    case "m": scale = 1_000_000
    case "S": scale = 1_000_000_000
    case "M": scale = 60_000_000_000
    case "H": scale = 3_600_000_000_000
    default: return nil
    }
    return value.multipliedReportingOverflow(by: scale).overflow ? Int64.max : value * scale
}
