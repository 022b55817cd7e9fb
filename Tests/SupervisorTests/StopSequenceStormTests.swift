import Glibc
import XCTest
@testable import Supervisor

/// A process queueing other signals at grpc-init as fast as it can: what the stop sequence
/// decides about SIGTERM, -grace and the child's exit while they keep coming, step by step on a
/// fake clock. (The integration test under a real storm can only bound these loosely: there,
/// the storm and the scheduler share the figure.)
final class StopSequenceStormTests: XCTestCase {
    private let us: Int64 = 1_000
    private let ms: Int64 = 1_000_000
    /// A real-time signal as the storm sends it (SIGRTMIN + 1 under glibc): any signal but a stop.
    private let storm: Int32 = 35
    /// Signals the loop reads from the signalfd before it ticks (Supervisor.signalsPerTurn).
    private let batch = 32

    func testAStormOfOtherSignalsDelaysNeitherTheSIGTERMNorTheGrace() {
        var c = StopSequence.Configuration()
        c.grace = 1_000 * ms
        var sequence = StopSequence(c, now: 0)
        var now: Int64 = 0
        for _ in 0..<10_000 {
            now += 1 * us
            XCTAssertEqual(sequence.handle(.signal(storm), now: now), [.forward(storm)])
        }
        XCTAssertNil(sequence.wakeAt, "forwarding arms nothing")
        let term = now
        XCTAssertEqual(sequence.handle(.signal(SIGTERM), now: term), [.stopping, .forward(SIGTERM)],
                       "SIGTERM is passed on in the step it is read, whatever was queued before it")
        let due = term + c.grace
        XCTAssertEqual(sequence.wakeAt, due)
        // The storm goes on up to the grace, the loop ticking after each batch; a second SIGTERM
        // among it is forwarded as it came. The grace stays where the first SIGTERM put it.
        var read = 0
        while now < due - 10 * us {
            now += 10 * us
            let signo = read == 50_000 ? SIGTERM : storm
            XCTAssertEqual(sequence.handle(.signal(signo), now: now), [.forward(signo)])
            read += 1
            if read % batch == 0 {
                XCTAssertEqual(sequence.handle(.tick, now: now), [], "nothing is due before the grace")
                XCTAssertEqual(sequence.wakeAt, due, "the storm does not move the grace")
            }
        }
        XCTAssertGreaterThan(read, 90_000)
        XCTAssertEqual(sequence.handle(.signal(storm), now: due), [.forward(storm)])
        XCTAssertEqual(sequence.handle(.tick, now: due), [.killChild], "-grace fires on the first tick at its deadline")
        XCTAssertNil(sequence.wakeAt)
        XCTAssertEqual(sequence.handle(.signal(storm), now: due + 1 * us), [.forward(storm)])
        XCTAssertEqual(sequence.handle(.childExited(status: SIGKILL), now: due + 2 * us), [.childGone, .lookForLeftovers])
        XCTAssertEqual(sequence.handle(.signal(storm), now: due + 3 * us), [], "nothing goes to a reaped child")
        XCTAssertEqual(sequence.handle(.leftovers(remain: false), now: due + 3 * us), [.exit(128 + SIGKILL)])
    }

    func testTheChildsExitEndsTheRunInTheStepItIsReadWhateverTheStorm() {
        var sequence = StopSequence(StopSequence.Configuration(), now: 0)
        var now: Int64 = 0
        for read in 1...10_000 {
            now += 1 * us
            XCTAssertEqual(sequence.handle(.signal(storm), now: now), [.forward(storm)])
            if read % batch == 0 { XCTAssertEqual(sequence.handle(.tick, now: now), []) }
        }
        let exit = now
        XCTAssertEqual(sequence.handle(.childExited(status: 3 << 8), now: exit), [.childGone, .lookForLeftovers])
        XCTAssertNil(sequence.wakeAt, "no deadline stands between the exit and the look at the leftovers")
        // What the storm queued behind the exit, read in the same batch: dropped, not forwarded.
        for _ in 0..<batch { XCTAssertEqual(sequence.handle(.signal(storm), now: exit), []) }
        XCTAssertNil(sequence.exitStatus)
        XCTAssertEqual(sequence.handle(.leftovers(remain: false), now: exit), [.exit(3)], "the exit at the instant of the child's")
        XCTAssertEqual(sequence.exitStatus, 3)
        XCTAssertEqual(sequence.handle(.signal(storm), now: exit + 1 * us), [])
    }
}
