import Client
import GateProtocol
import HealthServer
import HPACK
import SystemCalls
import Wire

/// Fresh Health/Lists (gRFC A90) of the servers watched, for the verbose answers and the
/// endpoint's List: a list taken once goes stale, so each such question asks again. A List in
/// flight is shared by the questions that ask while it runs, each waiting for it until its own
/// deadline; one whose deadline is later than the call's starts a call of its own, so that a
/// short question cannot cut a longer one's List short (at most `maxCallsPerServer` in flight
/// per server, the last joined when full). A server that answers UNIMPLEMENTED is not asked
/// again while it is watched.
final class ServiceLists {
    /// One server's List under way (or ended): the questions that asked while it ran share it.
    final class Call {
        let server: String
        /// Weak: a List kept for the questions that share it does not keep a lost server's
        /// connection.
        weak var channel: Channel?
        let handle: Channel.CallHandle
        /// When the call ends at the latest.
        let deadline: Int64
        private var taken: ServerListing.Outcome?

        init(server: String, channel: Channel, handle: Channel.CallHandle, deadline: Int64) {
            self.server = server
            self.channel = channel
            self.handle = handle
            self.deadline = deadline
        }

        /// What the List gave, once it ended; read from the call once. A call whose channel is
        /// gone (its server no longer watched) never ends: it ends here, so that no question waits
        /// for it until its deadline.
        var outcome: ServerListing.Outcome? {
            if let taken { return taken }
            if let status = handle.status {
                taken = HealthServer.listing(status: status, message: handle.nextMessage(), unreachable: handle.dialFailure?.unreachable)
            } else if channel == nil {
                taken = HealthServer.listLost
            }
            return taken
        }
    }

    /// A question's Lists, and how long it waits for them.
    struct Wait {
        let calls: [Call]
        let deadline: Int64

        /// Every List ended (or the deadline passed): what each gave, a List still under way
        /// counted as timed out; nil while the question waits on.
        func listings(now: Int64) -> [ServerListing]? {
            let ended = calls.allSatisfy { $0.outcome != nil }
            guard ended || now >= deadline else { return nil }
            return calls.map { ServerListing(server: $0.server, $0.outcome ?? HealthServer.listTimedOut) }
        }

        /// When the question must be looked at again: now if its Lists ended, else its deadline.
        var wakeAt: Int64 { calls.allSatisfy({ $0.outcome != nil }) ? 0 : deadline }
    }

    private let model: HealthModel
    private let metadata: [HeaderField]
    /// The channel of each server watched, by name (the agent's watchers).
    var channels: () -> [String: Channel] = { [:] }
    /// The Lists in flight for each server, oldest first.
    private(set) var inFlight: [String: [Call]] = [:]
    /// A question whose deadline is later than every call in flight starts another, up to this
    /// many per server: the later questions are not cut short by an earlier one's deadline, and a
    /// stream of questions still costs the server a bounded number of calls at a time.
    static let maxCallsPerServer = 2

    init(model: HealthModel, metadata: [HeaderField]) {
        self.model = model
        self.metadata = metadata
    }

    /// The servers a List may be asked of, in the order of their names.
    var listable: [String] { channels().keys.filter { !model.listUnimplementedBy.contains($0) }.sorted() }

    /// The Lists of `servers`, waited for until `deadline`: a call under way that lasts as long
    /// joined, else one started that lasts until `deadline` (or, at the limit of calls, the one
    /// that lasts longest joined).
    func wait(for servers: [String], until deadline: Int64, now: Int64) -> Wait {
        settle()
        let channels = channels()
        // A server no longer watched (or watched on a new channel) has its calls forgotten: the
        // questions that hold them hear the loss (`Call.outcome`), none joins them.
        for (server, calls) in inFlight {
            let current = calls.filter { call in channels[server].map { call.channel === $0 } ?? false }
            inFlight[server] = current.isEmpty ? nil : current
        }
        var calls: [Call] = []
        for server in servers {
            guard let channel = channels[server] else { continue }
            let running = inFlight[server] ?? []
            if let call = running.first(where: { $0.deadline >= deadline })
                ?? (running.count >= ServiceLists.maxCallsPerServer ? running.max(by: { $0.deadline < $1.deadline }) : nil) {
                calls.append(call)
                continue
            }
            let timeout = HealthServer.remaining(until: deadline, now: now)
            let handle = channel.start(path: Health.listPath, metadata: metadata, request: Health.listRequest, timeout: timeout)
            let call = Call(server: server, channel: channel, handle: handle, deadline: deadline)
            inFlight[server, default: []].append(call)
            calls.append(call)
        }
        return Wait(calls: calls, deadline: deadline)
    }

    /// Lists that ended leave the calls in flight (the next question asks afresh); a server's own
    /// UNIMPLEMENTED is remembered.
    func settle() {
        for (server, calls) in inFlight {
            var running: [Call] = []
            for call in calls {
                guard let outcome = call.outcome else {
                    running.append(call)
                    continue
                }
                if outcome == .unimplemented { model.listUnimplementedBy.insert(server) }
            }
            inFlight[server] = running.isEmpty ? nil : running
        }
    }
}
