import Addressing
import HPACK
import Transport
import Wire

/// The SPIFFE Workload API's X.509 profile, as a client sees it: where the agent listens
/// (SPIFFE_ENDPOINT_SOCKET), the call, and the answer's content. No I/O here.
public enum WorkloadAPI {
    public static let endpointVariable = "SPIFFE_ENDPOINT_SOCKET"
    /// workload.proto declares no package: the service is plain "SpiffeWorkloadAPI".
    public static let fetchX509SVIDPath = "/SpiffeWorkloadAPI/FetchX509SVID"
    /// Every call carries it; agents refuse calls without it (a guard against forwarded requests).
    public static let securityHeader = HeaderField("workload.spiffe.io", "true")
    /// X509SVIDRequest has no fields.
    public static let x509SVIDRequest: [UInt8] = []

    public struct EndpointError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// The agent's address from SPIFFE_ENDPOINT_SOCKET's value: `unix:///path`, `unix:/path` or
    /// `tcp://IP:PORT`, as go-spiffe accepts them (and with its messages).
    public static func endpoint(_ value: String?) throws(EndpointError) -> Target {
        guard let value, !value.isEmpty else {
            throw EndpointError(description: "workload endpoint socket address is not configured")
        }
        func invalid(_ why: String) -> EndpointError { EndpointError(description: "workload endpoint socket is not a valid address: \(why)") }
        if value.hasPrefix("unix:") {
            let rest = value.dropFirst("unix:".count)
            if rest.hasPrefix("//") {
                let path = rest.dropFirst(2)
                guard path.hasPrefix("/") else { throw invalid("workload endpoint unix socket URI must not include a host") }
                return .unix(path: String(path))
            }
            guard rest.hasPrefix("/") else { throw invalid("workload endpoint unix socket URI must not be opaque") }
            return .unix(path: String(rest))
        }
        if value.hasPrefix("tcp://") {
            let hostPort = String(value.dropFirst("tcp://".count))
            guard let target = try? Target.parse(hostPort), case .tcp(let host, _) = target,
                  SocketAddress.literal(host, port: 0) != nil, !hostPort.hasPrefix(":") else {
                throw invalid("workload endpoint tcp socket URI host component must be an IP:port")
            }
            return target
        }
        throw invalid("workload endpoint socket URI must have a \"tcp\" or \"unix\" scheme")
    }

    /// One X.509-SVID with its key and its trust domain's roots, as the agent sends them (DER).
    public struct X509SVID: Equatable, Sendable {
        public var spiffeID = ""
        /// The certificate chain, leaf first, DER certificates one after another.
        public var certificates: [UInt8] = []
        /// PKCS#8, unencrypted.
        public var privateKey: [UInt8] = []
        /// The trust domain's CA certificates, DER one after another.
        public var bundle: [UInt8] = []
    }

    /// X509SVIDResponse { repeated X509SVID svids = 1; repeated bytes crl = 2;
    /// map<string, bytes> federated_bundles = 3; }
    public struct X509Context: Equatable, Sendable {
        public var svids: [X509SVID] = []
        /// Other trust domains' roots, keyed as the agent keys them ("spiffe://example.org").
        public var federatedBundles: [String: [UInt8]] = [:]

        /// What the TLS context takes: the first SVID (go-spiffe's default choice), and the roots
        /// by trust domain as go-spiffe's source collects them: the bundle of every SVID in turn,
        /// then the federated ones, a later one for the same trust domain replacing an earlier.
        /// Nil without an SVID.
        public var credentials: SPIFFECredentials? {
            guard let svid = svids.first else { return nil }
            var bundles: [String: [UInt8]] = [:]
            for other in svids { bundles[WorkloadAPI.trustDomain(other.spiffeID)] = other.bundle }
            for (key, bundle) in federatedBundles { bundles[WorkloadAPI.trustDomain(key)] = bundle }
            return SPIFFECredentials(certificates: svid.certificates, privateKey: svid.privateKey, bundles: bundles)
        }
    }

    public static func decodeX509SVIDResponse(_ bytes: [UInt8]) throws(ProtobufError) -> X509Context {
        var context = X509Context()
        var reader = ProtobufReader(bytes)
        while let field = try reader.next() {
            guard field.wireType == .lengthDelimited else { continue }
            switch field.number {
            case 1: context.svids.append(try decodeSVID(field.bytes))
            case 3:
                // A map entry: { string key = 1; bytes value = 2; }
                var entry = ProtobufReader(field.bytes)
                var key = "", value: [UInt8] = []
                while let part = try entry.next() {
                    guard part.wireType == .lengthDelimited else { continue }
                    if part.number == 1 { key = String(decoding: part.bytes, as: UTF8.self) }
                    if part.number == 2 { value = Array(part.bytes) }
                }
                context.federatedBundles[key] = value
            default: continue
            }
        }
        return context
    }

    private static func decodeSVID(_ bytes: ArraySlice<UInt8>) throws(ProtobufError) -> X509SVID {
        var svid = X509SVID()
        var reader = ProtobufReader(bytes)
        while let field = try reader.next() {
            guard field.wireType == .lengthDelimited else { continue }
            switch field.number {
            case 1: svid.spiffeID = String(decoding: field.bytes, as: UTF8.self)
            case 2: svid.certificates = Array(field.bytes)
            case 3: svid.privateKey = Array(field.bytes)
            case 4: svid.bundle = Array(field.bytes)
            default: continue
            }
        }
        return svid
    }

    /// The trust domain of a SPIFFE ID or of a federated bundle's key: "example.org" for
    /// "spiffe://example.org/workload", "spiffe://example.org" or "example.org".
    public static func trustDomain(_ id: String) -> String {
        var rest = Substring(id)
        if rest.hasPrefix("spiffe://") { rest = rest.dropFirst("spiffe://".count) }
        return String(rest.prefix { $0 != "/" })
    }
}
