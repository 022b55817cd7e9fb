import Flags
import HPACK
import Transport

/// The probe's flags: the reference tool's names, defaults and checks.
public struct ProbeOptions {
    public var addr = ""
    public var service = ""
    public var userAgent = "grpc_health_probe"
    public var connectTimeout = GoDuration.second
    public var rpcTimeout = GoDuration.second
    /// (name, value) pairs in the order given.
    public var rpcHeaders: [(String, String)] = []
    /// What goes out as user-agent: -user-agent, then ours, as grpc-go appends its own.
    /// -rpc-header as the metadata of a call.
    public var metadata: [HeaderField] { rpcHeaders.map { HeaderField($0.0, $0.1) } }
    public var sentUserAgent: String { "\(userAgent) grpc-init/\(BuildInfo.version)" }
    public var tls = false
    public var tlsNoVerify = false
    public var tlsCACert = ""
    public var tlsClientCert = ""
    public var tlsClientKey = ""
    public var tlsServerName = ""
    public var alts = false
    public var verbose = false
    public var gzip = false
    public var spiffe = false

    static let flagSet = FlagSet([
        .init("addr", .string, usage: "(required) tcp host:port to connect (also [ipv6]:port, :port, unix:PATH, unix-abstract:NAME)"),
        .init("service", .string, usage: "service name to check (default: \"\")"),
        .init("user-agent", .string, default: .string("grpc_health_probe"), usage: "user-agent header value of health check requests"),
        .init("connect-timeout", .duration, default: .duration(.second), usage: "timeout for establishing connection"),
        .init("rpc-timeout", .duration, default: .duration(.second), usage: "timeout for health check rpc"),
        .init("rpc-header", .list(validate: { value in
            value.contains(":") ? nil : "invalid RPC header, expected 'key: value', got \(goQuote(value))"
        }), usage: "additional RPC headers in 'name: value' format. May specify more than one via multiple flags."),
        .init("tls", .bool, usage: "use TLS (default: false, INSECURE plaintext transport)"),
        .init("tls-no-verify", .bool, usage: "(with -tls) don't verify the certificate (INSECURE) presented by the server (default: false)"),
        .init("tls-ca-cert", .string, usage: "(with -tls, optional) file containing trusted certificates for verifying server"),
        .init("tls-client-cert", .string, usage: "(with -tls, optional) client certificate for authenticating to the server (requires -tls-client-key)"),
        .init("tls-client-key", .string, usage: "(with -tls) client private key for authenticating to the server (requires -tls-client-cert)"),
        .init("tls-server-name", .string, usage: "(with -tls) override the hostname used to verify the server certificate"),
        .init("alts", .bool, usage: "use ALTS (not supported: ALTS needs Google Cloud's handshaker service)"),
        .init("v", .bool, usage: "verbose logs"),
        .init("version", .bool, usage: "print the version and exit"),
        .init("gzip", .bool, usage: "use GZIPCompressor for requests and GZIPDecompressor for response (default: false)"),
        .init("spiffe", .bool, usage: "use SPIFFE to obtain mTLS credentials"),
    ])

    public static var usage: String { "Usage:\n" + flagSet.usage() + exitCodeHelp }

    static let exitCodeHelp = """

    Exit codes: 0 SERVING, 1 invalid arguments, 2 connection failed or timed out,
    3 RPC failed or timed out, 4 not SERVING, 20 SPIFFE credentials unavailable.
    """

    public enum Parsed {
        case run(ProbeOptions)
        case version
    }

    /// Parses and checks the arguments, in the reference tool's order of checks.
    /// `requireAddress` false: no -addr is fine (the health agent finds the address itself).
    public static func parse(_ arguments: [String], requireAddress: Bool = true) throws(ProbeFailure) -> Parsed {
        let parsed: FlagSet.Parsed
        do {
            parsed = try flagSet.parse(arguments)
        } catch {
            switch error {
            case .help: throw ProbeFailure.flags(nil, usage: usage)
            case .invalid(let message): throw ProbeFailure.flags(message, usage: usage)
            }
        }
        if parsed.bool("version") { return .version }

        var o = ProbeOptions()
        o.addr = parsed.string("addr")
        o.service = parsed.string("service")
        o.userAgent = parsed.string("user-agent")
        o.connectTimeout = parsed.duration("connect-timeout")
        o.rpcTimeout = parsed.duration("rpc-timeout")
        o.rpcHeaders = parsed.list("rpc-header").map { header in
            let colon = header.firstIndex(of: ":")!
            let value = header[header.index(after: colon)...].drop(while: { $0.isWhitespace })
            return (String(header[..<colon]), String(value))
        }
        o.tls = parsed.bool("tls")
        o.tlsNoVerify = parsed.bool("tls-no-verify")
        o.tlsCACert = parsed.string("tls-ca-cert")
        o.tlsClientCert = parsed.string("tls-client-cert")
        o.tlsClientKey = parsed.string("tls-client-key")
        o.tlsServerName = parsed.string("tls-server-name")
        o.alts = parsed.bool("alts")
        o.verbose = parsed.bool("v")
        o.gzip = parsed.bool("gzip")
        o.spiffe = parsed.bool("spiffe")
        try o.validate(requireAddress: requireAddress)
        return .run(o)
    }

    func validate(requireAddress: Bool = true) throws(ProbeFailure) {
        func fail(_ text: String) throws(ProbeFailure) { throw ProbeFailure.argument(text) }
        if addr.isEmpty && requireAddress { try fail("-addr not specified") }
        if connectTimeout.nanoseconds <= 0 { try fail("-connect-timeout must be greater than zero (specified: \(connectTimeout))") }
        if rpcTimeout.nanoseconds <= 0 { try fail("-rpc-timeout must be greater than zero (specified: \(rpcTimeout))") }
        if alts && spiffe { try fail("-alts and -spiffe are mutually incompatible") }
        if tls && alts { try fail("cannot specify -tls with -alts") }
        if let problem = tlsFlags.problem(prefix: "-") { try fail(problem) }
        if tls && spiffe { throw ProbeFailure(.invalidArguments, "-tls and -spiffe are mutually incompatible") }
        if alts { try fail("-alts is not supported: ALTS needs Google Cloud's ALTS handshaker; use -tls or -spiffe") }
    }

    public var tlsFlags: TLSFlags {
        var f = TLSFlags()
        f.tls = tls
        f.noVerify = tlsNoVerify
        f.caCert = tlsCACert
        f.clientCert = tlsClientCert
        f.clientKey = tlsClientKey
        f.serverName = tlsServerName
        return f
    }

    public var tlsConfiguration: TLSConfiguration {
        var c = TLSConfiguration()
        c.verify = !tlsNoVerify
        c.caFile = tlsCACert
        c.certificateFile = tlsClientCert
        c.keyFile = tlsClientKey
        c.serverName = tlsServerName
        return c
    }

    /// The `-v` option lines, as the reference prints them.
    var verboseLines: [String] {
        var lines = ["parsed options:", "> addr=\(addr) conn_timeout=\(connectTimeout) rpc_timeout=\(rpcTimeout)"]
        if !rpcHeaders.isEmpty {
            // Go prints metadata.MD (keys lower-cased, sorted) inside the flag's struct braces.
            var grouped: [String: [String]] = [:]
            for (name, value) in rpcHeaders { grouped[name.lowercased(), default: []].append(value) }
            let entries = grouped.keys.sorted().map { "\($0):[\(grouped[$0]!.joined(separator: " "))]" }
            lines.append("> headers: {map[\(entries.joined(separator: " "))]}")
        }
        lines.append("> tls=\(tls)")
        if tls {
            lines += ["  > no-verify=\(tlsNoVerify) ", "  > ca-cert=\(tlsCACert)", "  > client-cert=\(tlsClientCert)",
                      "  > client-key=\(tlsClientKey)", "  > server-name=\(tlsServerName)"]
        }
        lines += ["> alts=\(alts)", "> spiffe=\(spiffe)"]
        return lines
    }
}
