import GateProtocol
import Addressing
import Client
import Flags
import Glibc
import SPIFFE
import SystemCalls
import Transport
import Wire

extension Probe {
    /// The first X.509 context the Workload API at SPIFFE_ENDPOINT_SOCKET streams, within the RPC
    /// timeout (as the reference bounds it). Every failure is SPIFFE's (exit 20), and one that
    /// can be known at once (no socket, a refusal from the agent) is reported at once.
    public func fetchX509Context() throws(ProbeFailure) -> WorkloadAPI.X509Context {
        let value = Environment.value(WorkloadAPI.endpointVariable)
        let endpoint: Target
        do { endpoint = try WorkloadAPI.endpoint(value) } catch { throw ProbeFailure.spiffe(error.description) }
        let deadline = Deadline.after(options.rpcTimeout.nanoseconds, cancellation: signals)
        func unreachable(_ cause: String) -> ProbeFailure {
            ProbeFailure.spiffe("workload API at \(value ?? ""): \(cause)")
        }
        var pending: GRPCCall? = nil
        let connection: Connection
        do {
            connection = try dial(endpoint, security: .plaintext, userAgent: options.sentUserAgent,
                                  authority: "localhost", by: deadline) { client in
                pending = client.startCall(
                    path: WorkloadAPI.fetchX509SVIDPath, metadata: [WorkloadAPI.securityHeader],
                    timeoutNanoseconds: options.rpcTimeout.nanoseconds, compress: false, serverStreaming: true,
                    request: WorkloadAPI.x509SVIDRequest)
            }
        } catch {
            switch error {
            case .resolve(let cause): throw unreachable(cause.description)
            case .connect(let cause): throw unreachable(cause.description)
            case .interrupted(.deadline): throw ProbeFailure.spiffe("context deadline exceeded")
            case .interrupted(.signal(let signal)): throw ProbeFailure.spiffeCancelled(signal: signal)
            case .handshake(let handshake): throw unreachable(handshake.account)
            case .certificateRejected: throw unreachable("the agent refused the connection")
            }
        }
        let call = pending!
        // A response without SVIDs (an agent that has not attested the workload yet) is skipped,
        // as go-spiffe's source skips it: the next one may carry them, within the deadline.
        var sawNoSVIDs = false
        let noSVIDs = "no SVIDs in the Workload API's response"
        while true {
            switch connection.run(until: { !call.messages.isEmpty || call.status != nil }, by: deadline) {
            case .done, .closed:
                break
            case .interrupted(.deadline):
                throw ProbeFailure.spiffe("context deadline exceeded" + (sawNoSVIDs ? " (\(noSVIDs))" : ""))
            case .interrupted(.signal(let signo)):
                throw ProbeFailure.spiffeCancelled(signal: signo)
            }
            guard let message = call.nextMessage() else {
                // The agent may see the deadline (sent as grpc-timeout) pass just before we do.
                if call.status?.code == .deadlineExceeded {
                    throw ProbeFailure.spiffe("context deadline exceeded" + (sawNoSVIDs ? " (\(noSVIDs))" : ""))
                }
                if sawNoSVIDs && call.status?.code == .ok { throw ProbeFailure.spiffe(noSVIDs) }
                let status = call.status ?? connection.client.connectionFailure
                    ?? GRPCStatus(.unavailable, connection.transportFailure?.description ?? "connection closed before the first response")
                throw unreachable(status.description)
            }
            let context: WorkloadAPI.X509Context
            do { context = try WorkloadAPI.decodeX509SVIDResponse(message) } catch {
                throw unreachable("cannot decode the X509SVIDResponse: \(error)")
            }
            if context.svids.isEmpty {
                sawNoSVIDs = true
                continue
            }
            return context
        }
    }
}
