import Addressing
import Client
import Glibc
import SPIFFE
import SystemCalls
import Transport
import Wire

/// -ready-spiffe for a process that lives: one FetchX509SVID stream kept open to the Workload
/// API, and for each new connection to the server the newest X.509 context it sent. SPIRE
/// rotates SVIDs well before they expire and sends each on the open stream; a long-lived agent
/// that fetched once would go on presenting an expired one. The stream is not polled between
/// connections: what arrived waits in the socket and is read when credentials are next needed.
final class SVIDSource {
    let userAgent: [UInt8]
    let timeout: Int64
    let signals: SignalFD?
    private var connection: Connection?
    private var call: GRPCCall?
    private(set) var latest: WorkloadAPI.X509Context?

    init(userAgent: [UInt8], timeout: Int64, signals: SignalFD?) {
        self.userAgent = userAgent
        self.timeout = timeout
        self.signals = signals
    }

    enum Failure: Error {
        case unavailable(String)
        case cancelled
    }

    /// The newest context: what the open stream sent since the last call, or, when the stream
    /// ended, the first context of a new one (within the timeout).
    func current() throws(Failure) -> WorkloadAPI.X509Context {
        if let connection, let call, call.status == nil, !connection.isClosed {
            // Bounded: a few turns of what is waiting, never a wait.
            for _ in 0..<8 {
                _ = connection.pump(readable: true)
                take(call)
                if !connection.moreToRead { break }
            }
            if call.status == nil && !connection.isClosed, let latest { return latest }
        }
        return try reopen()
    }

    private func take(_ call: GRPCCall) {
        while let message = call.nextMessage() {
            // A response without SVIDs (an agent that has not attested us yet) changes nothing.
            if let context = try? WorkloadAPI.decodeX509SVIDResponse(message), !context.svids.isEmpty { latest = context }
        }
    }

    private func reopen() throws(Failure) -> WorkloadAPI.X509Context {
        connection = nil
        call = nil
        let value = Environment.value(WorkloadAPI.endpointVariable)
        let endpoint: Target
        do { endpoint = try WorkloadAPI.endpoint(value) } catch { throw .unavailable(error.description) }
        let deadline = Deadline.after(timeout, cancellation: signals)
        var pending: GRPCCall? = nil
        let opened: Connection
        do {
            opened = try dial(endpoint, security: .plaintext, userAgent: userAgent, authority: "localhost", by: deadline) { client in
                pending = client.startCall(path: WorkloadAPI.fetchX509SVIDPath, metadata: [WorkloadAPI.securityHeader],
                                           serverStreaming: true, request: WorkloadAPI.x509SVIDRequest)
            }
        } catch {
            if case .cancelled = error { throw .cancelled }
            throw .unavailable("workload API at \(value ?? ""): \(error)")
        }
        let stream = pending!
        let before = latest
        latest = nil
        switch opened.run(until: { self.take(stream); return self.latest != nil || stream.status != nil }, by: deadline) {
        case .cancelled: throw .cancelled
        case .timedOut:
            latest = before
            throw .unavailable("workload API at \(value ?? ""): no X.509 SVID within the timeout")
        case .done, .closed: break
        }
        guard let context = latest else {
            latest = before
            let status = stream.status ?? GRPCStatus(.unavailable, "connection closed")
            throw .unavailable("workload API at \(value ?? ""): \(status)")
        }
        connection = opened
        call = stream
        return context
    }
}
