/// The version reported by -version and sent in user-agent, and, for -version -v, what the binary
/// links with each version (as `go version -m` lists a Go binary's modules): a scanner that
/// cannot see inside a static binary can read them there, and in the release's SBOM.
public enum BuildInfo {
    /// scripts/version.sh's: the build stamps it into the executable, which sets it before
    /// anything runs. "unknown" only where Flags is linked without it (the unit tests, the fuzzers).
    nonisolated(unsafe) public static var version = "unknown"

    /// The linked components, asked for only by -version -v: the executable, which links them
    /// all, sets it (no module below it may import what it names).
    nonisolated(unsafe) public static var linkedComponents: () -> [(name: String, version: String)] = { [] }

    /// `grpc-init 0.1.0-dev+bb31c1b6ab12`, and with `verbose` one tab-separated line per linked component.
    public static func versionLines(_ program: String, verbose: Bool) -> [String] {
        let first = "\(program) \(version)"
        guard verbose else { return [first] }
        return [first] + linkedComponents().map { "\tlinked\t\($0.name)\t\($0.version)" }
    }
}
