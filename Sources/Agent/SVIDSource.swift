import Addressing
import Client
import Glibc
import SPIFFE
import SystemCalls
import Transport
import Wire

/// -ready-spiffe for a process that lives: one FetchX509SVID stream kept open to the Workload
/// API, whose every X.509 context replaces the last. SPIRE rotates SVIDs well before they expire
/// and sends each on the open stream; a long-lived agent that fetched once would go on
/// presenting an expired one. Opening the stream is a dial like any other, driven by the
/// reactor: a Workload API that does not answer delays nothing else.
final class SVIDSource: EventSource {
    let userAgent: [UInt8]
    let timeout: Int64
    /// The newest context with an SVID; kept when the stream ends, until a new one replaces it.
    private(set) var latest: WorkloadAPI.X509Context?
    /// Why the last attempt to open the stream failed, if it did.
    private(set) var failure: String?
    private var stream: DialedCall?
    /// An open that has not brought a first context by then has failed.
    private var firstBy: Int64 = .max
    private var retry = Backoff(first: 100_000_000, maximum: 5_000_000_000)
    private var retryAt: Int64?
    private var endpointText = ""

    init(userAgent: [UInt8], timeout: Int64) {
        self.userAgent = userAgent
        self.timeout = timeout
    }

    /// The stream is wanted: opens it unless it is open, opening, or waiting to retry.
    func want() {
        guard stream == nil else { return }
        if let retryAt, MonotonicClock.now() < retryAt { return }
        open()
    }

    private func open() {
        retryAt = nil
        let value = Environment.value(WorkloadAPI.endpointVariable)
        endpointText = value ?? ""
        let endpoint: Target
        do { endpoint = try WorkloadAPI.endpoint(value) } catch { return failed(error.description) }
        firstBy = MonotonicClock.deadline(after: timeout)
        stream = DialedCall(endpoint, security: .plaintext, userAgent: userAgent, authority: "localhost", deadline: Deadline(firstBy)) { client in
            client.startCall(path: WorkloadAPI.fetchX509SVIDPath, metadata: [WorkloadAPI.securityHeader], serverStreaming: true,
                             request: WorkloadAPI.x509SVIDRequest)
        }
        progress(now: MonotonicClock.now())
    }

    private func failed(_ why: String) {
        failure = why
        stream = nil
        retryAt = MonotonicClock.now().addingSaturated(retry.next())
    }

    private func progress(now: Int64) {
        guard let stream else { return }
        if let failure = stream.dialFailure { return failed("workload API at \(endpointText): \(failure)") }
        guard let connection = stream.connection, let call = stream.call else {
            if now >= firstBy { failed("workload API at \(endpointText): no X.509 SVID within the timeout") }
            return
        }
        while let message = call.nextMessage() {
            // A response without SVIDs (an agent that has not attested us yet) changes nothing.
            if let context = try? WorkloadAPI.decodeX509SVIDResponse(message), !context.svids.isEmpty {
                latest = context
                failure = nil
                firstBy = .max
                retry.reset()
            }
        }
        if let status = call.status {
            failed("workload API at \(endpointText): \(status)")
        } else if connection.isClosed {
            failed("workload API at \(endpointText): connection closed")
        } else if now >= firstBy {
            failed("workload API at \(endpointText): no X.509 SVID within the timeout")
        }
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) { stream?.descriptors(into: &set) }

    var wakeAt: Int64? {
        guard let stream else { return nil }
        return min(stream.wakeAt ?? .max, firstBy)
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        stream?.turn(polled, now: now)
        progress(now: now)
    }
}
