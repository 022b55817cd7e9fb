/// Why a -tls-client-cert or -tls-client-key file gave nothing usable, in the words of Go's
/// tls.X509KeyPair, decided from the PEM blocks the file holds (OpenSSL's own errors do not
/// tell "no PEM at all" from "the files were swapped").
public enum PEMInput {
    /// The types of the file's PEM blocks, in order: "CERTIFICATE", "EC PRIVATE KEY", ... A block
    /// counts as Go's pem.Decode counts it: its BEGIN line starts a line, and a line starting
    /// with its END follows (a truncated block is no block).
    public static func blockTypes(_ text: [UInt8]) -> [String] {
        let begin = Array("-----BEGIN ".utf8), dashes = Array("-----".utf8)
        var types: [String] = []
        var i = 0
        while let start = find(begin, in: text, from: i) {
            i = start + 1
            guard start == 0 || text[start - 1] == UInt8(ascii: "\n") else { continue }
            let nameStart = start + begin.count
            guard let end = find(dashes, in: text, from: nameStart) else { break }
            let name = text[nameStart..<end]
            guard !name.contains(UInt8(ascii: "\n")) else { continue }
            guard let close = find(Array("\n-----END ".utf8) + Array(name) + dashes, in: text, from: end) else { continue }
            types.append(String(decoding: name, as: UTF8.self))
            i = close + 1
        }
        return types
    }

    /// Whether a block type is a private key's ("PRIVATE KEY", "RSA PRIVATE KEY", ...).
    static func isKey(_ type: String) -> Bool { type == "PRIVATE KEY" || type.hasSuffix(" PRIVATE KEY") }

    /// The failure for a certificate file that OpenSSL could not load.
    public static func certificateFailure(_ types: [String]) -> String {
        if types.contains("CERTIFICATE") { return "x509: malformed certificate" }
        if types.isEmpty { return "tls: failed to find any PEM data in certificate input" }
        if types.count == 1 && isKey(types[0]) {
            return "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched"
        }
        return "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [\(types.joined(separator: " "))]"
    }

    /// The failure for a key file that OpenSSL could not load. An encrypted key (which Go's
    /// reader cannot read either) is, as there, a key that does not parse.
    public static func keyFailure(_ types: [String]) -> String {
        guard types.contains(where: isKey) else {
            if types.isEmpty { return "tls: failed to find any PEM data in key input" }
            if types == ["CERTIFICATE"] { return "tls: found a certificate rather than a key in the PEM for the private key" }
            return "tls: failed to find PEM block with type ending in \"PRIVATE KEY\" in key input after skipping PEM blocks of the following types: [\(types.joined(separator: " "))]"
        }
        return "tls: failed to parse private key"
    }

    private static func find(_ needle: [UInt8], in text: [UInt8], from start: Int) -> Int? {
        guard needle.count <= text.count else { return nil }
        var i = start
        while i + needle.count <= text.count {
            if text[i] == needle[0] && text[i..<i + needle.count].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

}
