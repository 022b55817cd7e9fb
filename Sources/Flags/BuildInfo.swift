/// The version reported by --version and sent in user-agent.
public enum BuildInfo {
    public static let version = "0.1.0"
}
