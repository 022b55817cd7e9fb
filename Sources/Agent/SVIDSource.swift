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
    private var dialer: Dialer?
    private var connection: Connection?
    private var call: GRPCCall?
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
        guard dialer == nil, connection == nil else { return }
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
        let opening = Dialer(endpoint, security: .plaintext, userAgent: userAgent, authority: "localhost",
                             deadline: Deadline(firstBy)) { [weak self] client in
            self?.call = client.startCall(path: WorkloadAPI.fetchX509SVIDPath, metadata: [WorkloadAPI.securityHeader],
                                          serverStreaming: true, request: WorkloadAPI.x509SVIDRequest)
        }
        dialer = opening
        dialed(opening)
    }

    private func failed(_ why: String) {
        failure = why
        dialer = nil
        connection = nil
        call = nil
        retryAt = MonotonicClock.now() + retry.next()
    }

    private func dialed(_ opening: Dialer) {
        guard let outcome = opening.outcome else { return }
        dialer = nil
        switch outcome {
        case .connected(let opened): connection = opened
        case .failed(let error): failed("workload API at \(endpointText): \(error)")
        }
    }

    private func take() {
        guard let call else { return }
        while let message = call.nextMessage() {
            // A response without SVIDs (an agent that has not attested us yet) changes nothing.
            if let context = try? WorkloadAPI.decodeX509SVIDResponse(message), !context.svids.isEmpty {
                latest = context
                failure = nil
                firstBy = .max
                retry.reset()
            }
        }
    }

    // MARK: EventSource

    func descriptors(into set: inout [pollfd]) {
        dialer?.descriptors(into: &set)
        connection?.descriptors(into: &set)
    }

    var wakeAt: Int64? {
        if let dialer { return dialer.wakeAt }
        if let connection { return min(connection.wakeAt ?? .max, firstBy) }
        return nil
    }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        if let dialer {
            dialer.turn(polled, now: now)
            dialed(dialer)
            return
        }
        guard let connection, let call else { return }
        connection.turn(polled, now: now)
        take()
        if let status = call.status {
            failed("workload API at \(endpointText): \(status)")
        } else if connection.isClosed {
            failed("workload API at \(endpointText): connection closed")
        } else if now >= firstBy {
            failed("workload API at \(endpointText): no X.509 SVID within the timeout")
        }
    }
}
