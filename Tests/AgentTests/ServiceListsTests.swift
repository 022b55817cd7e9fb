@testable import Agent
import CShim
import Flags
import GateProtocol
import Glibc
import HealthServer
import SystemCalls
import Transport
import Wire
import XCTest

/// The Lists taken for verbose questions, against a health server in the test's own reactor: a
/// question waits for its own deadline, not for that of the question that started the List; and
/// what wakes the endpoint while questions wait for Lists.
final class ServiceListsTests: XCTestCase {
    var server: InProcessHealthServer!
    var reactor: Reactor!

    override func setUpWithError() throws {
        server = try XCTUnwrap(InProcessHealthServer(), "an abstract unix socket to listen on")
        reactor = Reactor()
        reactor.add(server)
    }

    func watcher() -> (Watcher, HealthModel) {
        let reporter = Reporter { _ in }
        let model = HealthModel(services: [""], answerInterval: 0, reporter: reporter)
        let found = Found(target: server.target, security: .plaintext, reach: .plaintext, name: "in-process", discovered: false)
        let watcher = Watcher(found, plan: AgentPlan(GateConfiguration()), model: model, reporter: reporter)
        reactor.add(watcher)
        return (watcher, model)
    }

    /// Turns for `nanoseconds`, or until `done`.
    func turn(_ nanoseconds: Int64, until done: () -> Bool = { false }) {
        _ = reactor.run(until: { server.flush(); return done() }, deadline: MonotonicClock.deadline(after: nanoseconds))
    }

    func testAQuestionThatWaitsLongerIsNotCutShortByTheListOfAShorterOne() throws {
        let (watcher, model) = watcher()
        server.silentLists = true
        let lists = ServiceLists(model: model, metadata: [])
        lists.channels = { ["in-process": watcher.channel] }
        let now = MonotonicClock.now()
        let short = lists.wait(for: ["in-process"], until: now.addingSaturated(50_000_000), now: now)
        let long = lists.wait(for: ["in-process"], until: now.addingSaturated(5_000_000_000), now: now)
        XCTAssertEqual(lists.inFlight["in-process"]?.count, 2, "the longer question started a List of its own")
        // A third, at the limit of calls in flight, joins the one that lasts longest.
        let longest = lists.wait(for: ["in-process"], until: now.addingSaturated(10_000_000_000), now: now)
        XCTAssertTrue(longest.calls.first === long.calls.first)
        XCTAssertEqual(lists.inFlight["in-process"]?.count, 2)

        turn(2_000_000_000, until: { server.lists >= 2 && short.calls.allSatisfy { $0.outcome != nil } })
        turn(200_000_000)
        let later = MonotonicClock.now()
        guard case .failed = try XCTUnwrap(short.listings(now: later)).first?.outcome else { return XCTFail("the short question's List timed out") }
        XCTAssertNil(long.listings(now: later), "the longer question still waits for its List")
        XCTAssertNil(long.calls.first?.outcome)

        // One that waits no longer than the List under way joins it.
        lists.settle()
        let joining = lists.wait(for: ["in-process"], until: later.addingSaturated(1_000_000_000), now: later)
        XCTAssertTrue(joining.calls.first === long.calls.first)
        XCTAssertEqual(server.lists, 2)

        // A server no longer watched: nothing joins its Lists any more.
        lists.channels = { [:] }
        XCTAssertTrue(lists.wait(for: ["in-process"], until: later.addingSaturated(1_000_000_000), now: later).calls.isEmpty)
        XCTAssertTrue(lists.inFlight.isEmpty)
    }

    /// The endpoint's wake: a wait whose Lists ended is looked at once, unless its connection
    /// closes once flushed (a client that stopped reading would wake the reactor every turn).
    func testAConnectionThatClosesOnceFlushedDoesNotWakeForItsLists() throws {
        let reporter = Reporter { _ in }
        let model = HealthModel(services: [""], answerInterval: 0, reporter: reporter)
        let fd = cshim_listen_abstract("grpc-init-tests/\(getpid())/endpoint/\(UInt64.random(in: 0 ... .max))", 4)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let endpoint = HealthEndpoint(listener: Socket.adopt(listening: fd), model: model, lists: ServiceLists(model: model, metadata: []),
                                      metadata: [], reporter: reporter)
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair), 0)
        defer { Glibc.close(pair[1]) }
        let peer = HealthEndpoint.Peer(socket: Socket.adopt(listening: pair[0]), now: MonotonicClock.now())
        peer.speaks = .http2(HTTP2Connection(role: .server, limits: .server))
        // Lists ended: none to wait for.
        peer.pending = [HealthEndpoint.Pending(kind: .list, stream: 1, waiting: ServiceLists.Wait(calls: [], deadline: .max))]
        peer.awaitsLists = true
        endpoint.peers = [peer]
        XCTAssertEqual(endpoint.wakeAt, 0)
        peer.closeWhenFlushed = true
        XCTAssertNotEqual(endpoint.wakeAt, 0)
        endpoint.resumeListed(peer, now: MonotonicClock.now())
        XCTAssertTrue(peer.pending.isEmpty)
        XCTAssertFalse(peer.awaitsLists)
    }
}
