import Flags
import Glibc
import SystemCalls

public enum SupervisorMain {
    /// Runs the supervisor with `arguments` (without argv[0]), whose bytes are `rawArguments`;
    /// returns the exit status.
    public static func main(_ arguments: [String], rawArguments: [[UInt8]]) -> Int32 {
        do {
            switch try SupervisorOptions.parse(arguments, rawArguments: rawArguments) {
            case .version(let verbose):
                BuildInfo.versionLines("grpc-init", verbose: verbose).forEach { Output.line($0, to: STDOUT_FILENO) }
                return 0
            case .run(let options):
                return Supervisor(options: options).run()
            }
        } catch {
            switch error {
            case .usage(nil):
                // Asked for with -h, as with tini: the usage on stdout, success.
                Output.line(SupervisorOptions.usage, to: STDOUT_FILENO)
                return 0
            case .usage(let message?):
                // A log read as JSON gets one JSON line, without the usage's lines of text.
                if SupervisorOptions.logFormat(forErrorsIn: arguments, environment: Environment.value) == .json {
                    Output.line(SupervisorLog.render(.json, .error, message))
                    return 1
                }
                Output.line("[grpc-init] error: " + message)
                Output.line(SupervisorOptions.usage)
                return 1
            }
        }
    }
}
