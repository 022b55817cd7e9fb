import GateProtocol
import Glibc
import SystemCalls

/// The supervisor's side of the conversation, read from stdin: the configuration first, then
/// commands. A bounded amount is read per turn; a frame that does not decode ends the link.
final class SupervisorLink: EventSource {
    private let fd: Int32
    private var decoder = GateFraming.Decoder()
    private(set) var configuration: GateConfiguration?
    /// What the supervisor knows for the metrics, as it last said.
    private(set) var facts: SupervisorFacts?
    /// The supervisor closed its end, or spoke what we cannot read: the agent stops.
    private(set) var ended: AgentExit?
    var onDrain: () -> Void = {}
    private var buffer = [UInt8](repeating: 0, count: 4096)

    init(fd: Int32) { self.fd = fd }

    func descriptors(into set: inout [pollfd]) {
        if ended == nil { set.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
    }

    var wakeAt: Int64? { nil }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        guard let polled = polled.first, polled.revents != 0, ended == nil else { return }
        // One read per turn: the pipe is readable, so it does not block (the descriptor is the
        // supervisor's blocking pipe end), and a chatty supervisor cannot hold the loop.
        do {
            let n = buffer.withUnsafeMutableBytes { raw in retryingOnInterrupt { read(fd, raw.baseAddress, raw.count) } }
            if n < 0 && errno == EAGAIN { return }
            if n <= 0 {
                ended = .supervisorGone
                return
            }
            decoder.append(buffer[0..<n])
            do {
                while let frame = try decoder.nextFrame() {
                    guard let message = try SupervisorMessage.decode(kind: frame.kind, payload: frame.payload) else { continue }
                    switch message {
                    case .configure(let given): if configuration == nil { configuration = given }
                    case .drain: onDrain()
                    case .facts(let given): facts = given
                    }
                }
            } catch {
                ended = .protocolError
                return
            }
        }
    }
}
