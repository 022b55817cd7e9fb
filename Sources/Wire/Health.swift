import GateProtocol

/// grpc.health.v1 (health.proto): the request and response messages and the method paths.
public enum Health {
    public static let checkPath = "/grpc.health.v1.Health/Check"
    public static let watchPath = "/grpc.health.v1.Health/Watch"

    public typealias ServingStatus = GateProtocol.ServingStatus

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

extension Verdict {
    /// A finished health call (a Check): its status and the response received, as grpc-go's
    /// client concludes them; the probe and the agent read a Check's answer here alike.
    public init(checkStatus status: GRPCStatus, message: [UInt8]?) {
        guard status.code == .ok else {
            self = .rpcFailed(status)
            return
        }
        guard let message else {
            self = .rpcFailed(GRPCStatus(.internalError, "server sent no response message"))
            return
        }
        do {
            let serving = try Health.decodeResponse(message)
            self = serving == .serving ? .serving : .notServing(serving)
        } catch {
            self = .rpcFailed(GRPCStatus(.internalError, Verdict.undecodableMessage("\(error)")))
        }
    }
}
