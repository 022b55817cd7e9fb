/// grpc.health.v1 (health.proto): the request and response messages and the method paths.
public enum Health {
    public static let checkPath = "/grpc.health.v1.Health/Check"
    public static let watchPath = "/grpc.health.v1.Health/Watch"

    public enum ServingStatus: Equatable, Sendable, CustomStringConvertible {
        case unknown, serving, notServing, serviceUnknown
        /// A value health.proto does not name; an enum is an int32 on the wire.
        case other(Int32)

        init(_ raw: Int32) {
            switch raw {
            case 0: self = .unknown
            case 1: self = .serving
            case 2: self = .notServing
            case 3: self = .serviceUnknown
            default: self = .other(raw)
            }
        }

        public var rawValue: Int32 {
            switch self {
            case .unknown: return 0
            case .serving: return 1
            case .notServing: return 2
            case .serviceUnknown: return 3
            case .other(let n): return n
            }
        }

        /// The enum value's name, as protobuf-go's String() prints it (the number when unknown).
        public var description: String {
            switch self {
            case .unknown: return "UNKNOWN"
            case .serving: return "SERVING"
            case .notServing: return "NOT_SERVING"
            case .serviceUnknown: return "SERVICE_UNKNOWN"
            case .other(let n): return "\(n)"
            }
        }
    }

    /// HealthCheckRequest { string service = 1; }
    public static func request(service: String) -> [UInt8] { request(service: Array(service.utf8)) }

    /// A HealthCheckRequest for a service name's bytes; nil when they are not UTF-8, which a
    /// proto3 string may not hold (grpc-go's marshaling refuses it).
    public static func request(service: [UInt8]) -> [UInt8] {
        var w = ProtobufWriter()
        if !service.isEmpty { w.lengthDelimited(1, service) }
        return w.bytes
    }

    /// grpc-go's words for a request whose string field is not UTF-8.
    public static let invalidUTF8 = GRPCStatus(.internalError, "grpc: error while marshaling: string field contains invalid UTF-8")

    /// The service a HealthCheckRequest names.
    public static func decodeRequest(_ bytes: [UInt8]) throws(ProtobufError) -> String {
        var reader = ProtobufReader(bytes)
        var service = ""
        while let field = try reader.next() {
            if field.number == 1 && field.wireType == .lengthDelimited { service = String(decoding: field.bytes, as: UTF8.self) }
        }
        return service
    }

    public static func response(_ status: ServingStatus) -> [UInt8] {
        var w = ProtobufWriter()
        w.uint(1, UInt64(bitPattern: Int64(status.rawValue)))  // negative values sign-extended, as protobuf has them
        return w.bytes
    }

    /// HealthCheckResponse { ServingStatus status = 1; }
    public static func decodeResponse(_ bytes: [UInt8]) throws(ProtobufError) -> ServingStatus {
        var reader = ProtobufReader(bytes)
        var status: Int32 = 0
        while let field = try reader.next() {
            // Negative values arrive sign-extended to 64 bits; protobuf keeps the low 32.
            if field.number == 1 && field.wireType == .varint { status = Int32(truncatingIfNeeded: field.scalar) }
        }
        return ServingStatus(status)
    }
}
