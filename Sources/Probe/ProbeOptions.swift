import Client
import Flags
import HPACK
import Transport
import Wire

/// The probe's flags: the reference tool's names, defaults and checks.
public struct ProbeOptions {
    public var addr = ""
    /// -service, -user-agent and -rpc-header as the arguments' bytes: Go sends a flag's bytes as
    /// they are (a service name that is not UTF-8 fails the call, as grpc-go's marshaling does).
    public var service: [UInt8] = []
    public var userAgent = Array("grpc_health_probe".utf8)
    public var connectTimeout = GoDuration.second
    public var rpcTimeout = GoDuration.second
    /// -rpc-header as the metadata of a call, in the order given.
    public var metadata: [HeaderField] = []
    /// What goes out as user-agent: -user-agent, a space, then ours, as grpc-go's WithUserAgent
    /// appends its own; an empty -user-agent too (the value then starts with the space).
    public var sentUserAgent: [UInt8] { ProbeOptions.sentUserAgent(userAgent) }

    public static func sentUserAgent(_ userAgent: [UInt8]) -> [UInt8] {
        userAgent + [UInt8(ascii: " ")] + Array("grpc-init/\(BuildInfo.version)".utf8)
    }

    /// An -rpc-header value ("name: value", its colon checked already) as a header field: split
    /// at the first ':', the value's leading white space trimmed, rune by rune as Go's
    /// strings.TrimLeftFunc(unicode.IsSpace) does (a combining mark after a space stays).
    public static func header(_ bytes: [UInt8]) -> HeaderField {
        Metadata.field(fromFlag: bytes)
    }
    /// What goes out as :authority: grpc-go sends the TLS server name when one is given, else the
    /// address.
    public var authority: String? { tls.tls && !tls.serverName.isEmpty ? tls.serverName : nil }
    /// -tls and its companions, in the one shape the gate's -ready-tls flags share.
    public var tls = TLSFlags()
    public var alts = false
    public var verbose = false
    public var gzip = false
    public var spiffe = false

    static let flagSet = FlagSet([
        // The reference tool's words, exactly: its usage is part of the drop-in (our extras are in
        // `grpc-init --help`).
        .init("addr", .string, usage: "(required) tcp host:port to connect"),
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
        .init("alts", .bool, usage: "use ALTS (default: false, INSECURE plaintext transport)"),
        .init("v", .bool, usage: "verbose logs"),
        .init("version", .bool, usage: "show probe version and exit"),
        .init("gzip", .bool, usage: "use GZIPCompressor for requests and GZIPDecompressor for response (default: false)"),
        .init("spiffe", .bool, usage: "use SPIFFE to obtain mTLS credentials"),
    ])

    /// Go's flag package's usage, as printed: each line ends with the last flag's (the lines go
    /// out as one, whose own newline ends it).
    public static var usage: String { String(("Usage:\n" + flagSet.usage()).dropLast()) }

    public enum Parsed {
        case run(ProbeOptions)
        /// -version; with -v, the linked components too.
        case version(verbose: Bool)
    }

    /// Parses and checks the arguments, in the reference tool's order of checks. With no -addr
    /// the run asks grpc-init's health agent if there is one; a failed check is then reported
    /// only if there is (`deferredFailure`), and "-addr not specified" if there is not.
    /// `rawArguments`, the same arguments as bytes, give -service, -user-agent and -rpc-header
    /// their exact bytes.
    public static func parse(_ arguments: [String], rawArguments: [[UInt8]]? = nil) throws(ProbeFailure) -> Parsed {
        let parsed: FlagSet.Parsed
        do {
            parsed = try flagSet.parse(arguments)
        } catch {
            switch error {
            case .help: throw ProbeFailure.flags(nil, usage: usage)
            case .invalid(let message): throw ProbeFailure.flags(message, usage: usage)
            }
        }
        if parsed.bool("version") { return .version(verbose: parsed.bool("v")) }

        var o = ProbeOptions()
        o.addr = parsed.string("addr")
        let raw = flagSet.rawValues(of: ["service", "user-agent", "rpc-header"], in: rawArguments ?? arguments.map { Array($0.utf8) })
        o.service = raw["service"]?.last ?? []
        o.userAgent = raw["user-agent"]?.last ?? Array("grpc_health_probe".utf8)
        o.connectTimeout = parsed.duration("connect-timeout")
        o.rpcTimeout = parsed.duration("rpc-timeout")
        o.metadata = (raw["rpc-header"] ?? []).map { ProbeOptions.header($0) }
        o.tls = TLSFlags(parsed, prefix: "")
        o.alts = parsed.bool("alts")
        o.verbose = parsed.bool("v")
        o.gzip = parsed.bool("gzip")
        o.spiffe = parsed.bool("spiffe")
        o.serviceGiven = parsed.given.contains("service")
        if o.addr.isEmpty {
            do { try o.validate() } catch { o.deferredFailure = error }
        } else {
            try o.validate()
        }
        return .run(o)
    }

    /// With no -addr: what the checks found wrong, reported once an agent is there to ask.
    public var deferredFailure: ProbeFailure?
    /// -service was given (even empty): the agent is asked about that service, not every one.
    public var serviceGiven = false

    /// The reference's failure for a missing -addr (with no health agent to ask instead).
    public static let addressMissing = ProbeFailure.argument("-addr not specified")

    func validate() throws(ProbeFailure) {
        func fail(_ text: String) throws(ProbeFailure) { throw ProbeFailure.argument(text) }
        if connectTimeout.nanoseconds <= 0 { try fail("-connect-timeout must be greater than zero (specified: \(connectTimeout))") }
        if rpcTimeout.nanoseconds <= 0 { try fail("-rpc-timeout must be greater than zero (specified: \(rpcTimeout))") }
        if alts && spiffe { try fail("-alts and -spiffe are mutually incompatible") }
        if tls.tls && alts { try fail("cannot specify -tls with -alts") }
        if let problem = tls.problem(prefix: "-") { try fail(problem) }
        if tls.tls && spiffe { throw ProbeFailure(.invalidArguments, "-tls and -spiffe are mutually incompatible") }
        if alts { try fail("-alts is not supported: ALTS needs Google Cloud's ALTS handshaker; use -tls or -spiffe") }
    }

    /// `bytes` without the white space it starts with, as Go's TrimLeftFunc(unicode.IsSpace):
    /// whole runes; bytes that are not UTF-8 end the trimming.
    /// The `-v` option lines, as the reference prints them: bytes, as Go's log writes a header
    /// value's (bytes that are not UTF-8 included).
    var verboseLines: [[UInt8]] {
        var lines = [Array("parsed options:".utf8), Array("> addr=\(addr) conn_timeout=\(connectTimeout) rpc_timeout=\(rpcTimeout)".utf8)]
        if !metadata.isEmpty {
            // Go prints metadata.MD (keys lower-cased, sorted by their bytes) inside the flag's
            // struct braces.
            var grouped: [[UInt8]: [[UInt8]]] = [:]
            for field in metadata { grouped[GRPCClient.goLowercased(field.nameBytes), default: []].append(field.valueBytes) }
            let space = [UInt8(ascii: " ")]
            let entries = grouped.keys.sorted { $0.lexicographicallyPrecedes($1) }
                .map { $0 + Array(":[".utf8) + Array(grouped[$0]!.joined(separator: space)) + Array("]".utf8) }
            lines.append(Array("> headers: {map[".utf8) + Array(entries.joined(separator: space)) + Array("]}".utf8))
        }
        var rest = ["> tls=\(tls.tls)"]
        if tls.tls {
            rest += ["  > no-verify=\(tls.noVerify) ", "  > ca-cert=\(tls.caCert)", "  > client-cert=\(tls.clientCert)",
                     "  > client-key=\(tls.clientKey)", "  > server-name=\(tls.serverName)"]
        }
        rest += ["> alts=\(alts)", "> spiffe=\(spiffe)"]
        return lines + rest.map { Array($0.utf8) }
    }
}
