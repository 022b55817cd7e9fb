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

    /// Each flag, declared once: its key reads its value.
    enum Keys {
        // The reference tool's words, exactly: its usage is part of the drop-in (our extras are in
        // `grpc-init --help`).
        static let addr = Flag<String>("addr", usage: "(required) tcp host:port to connect")
        static let service = Flag<String>("service", usage: "service name to check (default: \"\")")
        static let userAgent = Flag<String>("user-agent", default: "grpc_health_probe", usage: "user-agent header value of health check requests")
        static let connectTimeout = Flag<GoDuration>("connect-timeout", default: .second, usage: "timeout for establishing connection")
        static let rpcTimeout = Flag<GoDuration>("rpc-timeout", default: .second, usage: "timeout for health check rpc")
        static let rpcHeader = Flag<[String]>("rpc-header", usage: "additional RPC headers in 'name: value' format. May specify more than one via multiple flags.",
                                              validate: { value in value.contains(":") ? nil : "invalid RPC header, expected 'key: value', got \(goQuote(value))" })
        static let tls = TLSFlags.Keys(
            tls: Flag("tls", usage: "use TLS (default: false, INSECURE plaintext transport)"),
            noVerify: Flag("tls-no-verify", usage: "(with -tls) don't verify the certificate (INSECURE) presented by the server (default: false)"),
            caCert: Flag("tls-ca-cert", usage: "(with -tls, optional) file containing trusted certificates for verifying server"),
            clientCert: Flag("tls-client-cert", usage: "(with -tls, optional) client certificate for authenticating to the server (requires -tls-client-key)"),
            clientKey: Flag("tls-client-key", usage: "(with -tls) client private key for authenticating to the server (requires -tls-client-cert)"),
            serverName: Flag("tls-server-name", usage: "(with -tls) override the hostname used to verify the server certificate"))
        static let alts = Flag<Bool>("alts", usage: "use ALTS (default: false, INSECURE plaintext transport)")
        static let verbose = Flag<Bool>("v", usage: "verbose logs")
        static let version = Flag<Bool>("version", usage: "show probe version and exit")
        static let gzip = Flag<Bool>("gzip", usage: "use GZIPCompressor for requests and GZIPDecompressor for response (default: false)")
        static let spiffe = Flag<Bool>("spiffe", usage: "use SPIFFE to obtain mTLS credentials")
    }

    static let flagSet = FlagSet([
        Keys.addr.definition, Keys.service.definition, Keys.userAgent.definition, Keys.connectTimeout.definition, Keys.rpcTimeout.definition,
        Keys.rpcHeader.definition, Keys.tls.tls.definition, Keys.tls.noVerify.definition, Keys.tls.caCert.definition,
        Keys.tls.clientCert.definition, Keys.tls.clientKey.definition, Keys.tls.serverName.definition, Keys.alts.definition,
        Keys.verbose.definition, Keys.version.definition, Keys.gzip.definition, Keys.spiffe.definition,
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
        if parsed[Keys.version] { return .version(verbose: parsed[Keys.verbose]) }

        var o = ProbeOptions()
        o.addr = parsed[Keys.addr]
        let raw = flagSet.rawValues(of: [Keys.service.definition, Keys.userAgent.definition, Keys.rpcHeader.definition], in: rawArguments ?? arguments.map { Array($0.utf8) })
        o.service = raw[Keys.service].last ?? []
        o.userAgent = raw[Keys.userAgent].last ?? Array(Keys.userAgent.defaultValue.utf8)
        o.connectTimeout = parsed[Keys.connectTimeout]
        o.rpcTimeout = parsed[Keys.rpcTimeout]
        o.metadata = raw[Keys.rpcHeader].map { ProbeOptions.header($0) }
        o.tls = TLSFlags(parsed, Keys.tls)
        o.alts = parsed[Keys.alts]
        o.verbose = parsed[Keys.verbose]
        o.gzip = parsed[Keys.gzip]
        o.spiffe = parsed[Keys.spiffe]
        o.serviceGiven = parsed.isGiven(Keys.service)
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
