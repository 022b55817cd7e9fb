import GateProtocol

/// grpc.health.v1 (health.proto): the request and response messages and the method paths.
public enum Health {
    public static let checkPath = "/grpc.health.v1.Health/Check"
    public static let watchPath = "/grpc.health.v1.Health/Watch"
    /// gRFC A90: `rpc List(HealthListRequest) returns (HealthListResponse)`.
    public static let listPath = "/grpc.health.v1.Health/List"
    /// The most services a List answers with (A90: a server with more answers
    /// RESOURCE_EXHAUSTED instead).
    public static let maxListed = 100

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

    /// HealthListRequest {}: empty.
    public static let listRequest: [UInt8] = []

    /// HealthListResponse { map<string, HealthCheckResponse> statuses = 1; }: each entry of the
    /// map a message of its own, key = 1 and value = 2, in the order given.
    public static func listResponse(_ statuses: [(service: String, status: ServingStatus)]) -> [UInt8] {
        var w = ProtobufWriter()
        for (service, status) in statuses {
            var entry = ProtobufWriter()
            if !service.isEmpty { entry.string(1, service) }
            entry.lengthDelimited(2, response(status))
            w.lengthDelimited(1, entry.bytes)
        }
        return w.bytes
    }

    /// Why a HealthListResponse cannot be used.
    public enum ListFailure: Error, Equatable, CustomStringConvertible {
        case undecodable(ProtobufError)
        /// More services than A90 lets a List answer with.
        case tooMany(Int)

        public var description: String {
            switch self {
            case .undecodable(let why): return why.description
            case .tooMany(let count): return "the server listed \(count) services, more than \(Health.maxListed)"
            }
        }
    }

    /// Each listed service and its status, sorted by name. A key repeated is the last one given
    /// (protobuf's rule for maps); a missing key or value is the default ("", UNKNOWN); a key
    /// that is not UTF-8 is read with U+FFFD for its broken bytes.
    public static func decodeListResponse(_ bytes: [UInt8]) throws(ListFailure) -> [(service: String, status: ServingStatus)] {
        let statuses: [String: ServingStatus]
        do { statuses = try decodeListEntries(bytes) } catch { throw .undecodable(error) }
        guard statuses.count <= maxListed else { throw .tooMany(statuses.count) }
        return statuses.keys.sorted().map { ($0, statuses[$0]!) }
    }

    private static func decodeListEntries(_ bytes: [UInt8]) throws(ProtobufError) -> [String: ServingStatus] {
        var statuses: [String: ServingStatus] = [:]
        var reader = ProtobufReader(bytes)
        while let field = try reader.next() {
            guard field.number == 1 && field.wireType == .lengthDelimited else { continue }
            var entry = ProtobufReader(field.bytes)
            var service = ""
            var status = ServingStatus.unknown
            while let part = try entry.next() {
                guard part.wireType == .lengthDelimited else { continue }
                if part.number == 1 { service = String(decoding: part.bytes, as: UTF8.self) }
                if part.number == 2 { status = try decodeResponse(Array(part.bytes)) }
            }
            statuses[service] = status
        }
        return statuses
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
