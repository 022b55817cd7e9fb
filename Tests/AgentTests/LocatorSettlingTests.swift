@testable import Agent
import Flags
import GateProtocol
import Glibc
import SystemCalls
import XCTest

/// Readiness with discovery waits until discovery has settled: every server found SERVING, no
/// listener of the tree waiting to be judged, and a scan begun as the last server turned SERVING
/// that found nothing new. The locator is driven with listeners the test lists (servers in the
/// test's own reactor), and the test plays the agent's part: each server found is watched, and
/// turns SERVING when the test says so.
final class LocatorSettlingTests: XCTestCase {
    var reactor: Reactor!
    var sent: [AgentMessage] = []
    var listed: [Listener] = []
    var scans = 0
    var model: HealthModel!
    var locator: Locator!
    var watched: [String] = []

    override func setUp() {
        reactor = Reactor()
        sent = []
        listed = []
        scans = 0
        watched = []
    }

    override func tearDown() {
        locator = nil
        model = nil
        reactor = nil
    }

    func start(addr: String = "") {
        var configuration = GateConfiguration()
        configuration.addr = addr
        configuration.connectTimeout = GoDuration(nanoseconds: 300_000_000)
        configuration.rpcTimeout = GoDuration(nanoseconds: 300_000_000)
        let reporter = Reporter { [unowned self] in self.sent.append($0) }
        model = HealthModel(services: [""], answerInterval: 0, reporter: reporter)
        let credentials = Credentials(configuration, svids: nil, reporter: reporter)
        let locator = Locator(plan: AgentPlan(configuration), credentials: credentials, model: model, reporter: reporter, scanSource: { [unowned self] in
            self.scans += 1
            var scan = Discovery.Scan()
            scan.listeners = self.listed
            return scan
        })
        model.settle = { [unowned locator] in locator.confirm(now: MonotonicClock.now()) }
        self.locator = locator
        reactor.add(locator)
    }

    func listener(_ name: String, inode: UInt64) -> Listener { Listener(address: .unix(path: "@" + name), inode: inode) }

    /// The agent's part: each server found is watched (awaiting its first answer).
    func takeFound() {
        for server in locator.takeFound() {
            model.add(server: server.name)
            watched.append(server.name)
        }
    }

    /// Runs the reactor, taking what is found, until `done` or a deadline.
    @discardableResult
    func run(until done: () -> Bool, within nanoseconds: Int64 = 3_000_000_000) -> Bool {
        let outcome = reactor.run(until: { takeFound(); return done() }, deadline: MonotonicClock.deadline(after: nanoseconds))
        return outcome == .done
    }

    func serving(_ name: String) { model.update(server: name, service: "", .serving(server: name)) }

    var readySaid: Bool { sent.contains { if case .health(.serving) = $0 { return true } else { return false } } }

    func testTheLastServerServingIsConfirmedByAScanAtOnce() throws {
        let first = try XCTUnwrap(InProcessHealthServer())
        reactor.add(first)
        let a = listener(first.name, inode: 1)
        listed = [a]
        start()
        XCTAssertTrue(run { watched == [a.description] })
        // A second server listens now, after the scan that found the first: the first's SERVING
        // scans at once and waits for it, not for the next scan's pause.
        let second = try XCTUnwrap(InProcessHealthServer())
        second.statuses = ["": .notServing]
        reactor.add(second)
        let b = listener(second.name, inode: 2)
        listed = [a, b]
        let before = scans
        serving(a.description)
        XCTAssertEqual(scans, before + 1)
        XCTAssertEqual(model.state, .notServing(.server(b.description, .awaitingAnswer)))
        XCTAssertFalse(readySaid)
        XCTAssertTrue(run { watched.count == 2 })
        model.update(server: b.description, service: "", .notServing(.status(.notServing)))
        XCTAssertEqual(model.state, .notServing(.server(b.description, .status(.notServing))))
        serving(b.description)
        XCTAssertEqual(model.state, .serving(server: [a.description, b.description].sorted().joined(separator: ", ")))
        XCTAssertTrue(readySaid)
    }

    func testAServerAloneIsReadyAtItsFirstServing() throws {
        let only = try XCTUnwrap(InProcessHealthServer())
        reactor.add(only)
        let a = listener(only.name, inode: 1)
        listed = [a]
        start()
        XCTAssertTrue(run { watched == [a.description] })
        serving(a.description)
        XCTAssertEqual(model.state, .serving(server: a.description))
        XCTAssertTrue(readySaid)
        // Ready once: the scans stop a little later, and the locator does not wake again.
        XCTAssertTrue(run { locator.stopped }, "the scans went on")
        XCTAssertNil(locator.wakeAt)
    }

    func testAListenerBeingTriedHoldsReadinessUntilItIsJudged() throws {
        let first = try XCTUnwrap(InProcessHealthServer())
        let banner = try XCTUnwrap(Banner("SSH-2.0-OpenSSH_9.2\r\n"))
        reactor.add(first)
        let a = listener(first.name, inode: 1)
        let other = listener(banner.name, inode: 2)
        // Both listed at once; the other protocol answers only once the first is SERVING.
        listed = [a, other]
        start()
        XCTAssertTrue(run { watched == [a.description] })
        serving(a.description)
        XCTAssertEqual(model.state, .notServing(.server(other.description, .awaitingAnswer)))
        XCTAssertFalse(readySaid)
        reactor.add(banner)
        // Judged not gRPC: it holds nothing back any more.
        XCTAssertTrue(run { model.state.isServing })
        XCTAssertTrue(sent.contains { if case .passedOver(let name, _, _) = $0 { return name == other.description } else { return false } })
        XCTAssertEqual(model.state, .serving(server: a.description))
    }

    func testASilentListenerHoldsReadinessOnlyUntilItsAttemptTimesOut() throws {
        let first = try XCTUnwrap(InProcessHealthServer())
        let silent = try XCTUnwrap(Banner(nil))
        reactor.add(first)
        reactor.add(silent)
        let a = listener(first.name, inode: 1)
        let quiet = listener(silent.name, inode: 2)
        listed = [a, quiet]
        start()
        XCTAssertTrue(run { watched == [a.description] })
        let started = MonotonicClock.now()
        serving(a.description)
        XCTAssertEqual(model.state, .notServing(.server(quiet.description, .awaitingAnswer)))
        // Bounded by the attempt's connect timeout; tried again on later scans, never waited for.
        XCTAssertTrue(run(until: { model.state.isServing }, within: 2_000_000_000))
        XCTAssertGreaterThanOrEqual(MonotonicClock.now() - started, 100_000_000, "ready before the attempt ended")
        XCTAssertFalse(sent.contains { if case .passedOver = $0 { return true } else { return false } }, "a silent listener may answer later")
        // Tried again on later scans, it holds nothing back once the tree is ready.
        let before = scans
        XCTAssertTrue(run { scans >= before + 3 })
        XCTAssertEqual(model.state, .serving(server: a.description))
    }

    func testANamedServerNeedsNoConfirmingScan() throws {
        let only = try XCTUnwrap(InProcessHealthServer())
        reactor.add(only)
        listed = [listener(only.name, inode: 1)]
        start(addr: "unix-abstract:" + only.name)
        XCTAssertTrue(run { watched.count == 1 })
        let before = scans
        serving(watched[0])
        XCTAssertEqual(scans, before)
        XCTAssertTrue(model.state.isServing)
    }
}
