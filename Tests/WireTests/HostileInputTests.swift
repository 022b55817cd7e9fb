import XCTest
import HPACK
@testable import Wire

/// Arbitrary and mutated bytes into every parser a server can reach: each must answer with an
/// error or a result, never trap. Seeded, so a failure reproduces.
final class HostileInputTests: XCTestCase {
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    func randomBytes(_ rng: inout SplitMix, max: Int) -> [UInt8] {
        (0..<Int.random(in: 0...max, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    func testHPACKDecoderNeverTraps() {
        var rng = SplitMix(state: 7541)
        var encoder = HPACKEncoder(indexing: .incremental)
        let valid = encoder.encode([HeaderField(":status", "200"), HeaderField("grpc-message", "café"), HeaderField("x", "y")])
        var outcomes = [0, 0]
        for i in 0..<20_000 {
            var block = i % 2 == 0 ? randomBytes(&rng, max: 64) : valid
            if i % 2 == 1 {
                for _ in 0..<3 { block[Int.random(in: 0..<block.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            }
            var decoder = HPACKDecoder(maxHeaderListSize: 4096)
            outcomes[(try? decoder.decode(block)) == nil ? 0 : 1] += 1
        }
        XCTAssertGreaterThan(outcomes[0], 0, "some inputs must be rejected")
        XCTAssertGreaterThan(outcomes[1], 0, "some inputs must decode")
    }

    func testConnectionAndCallsNeverTrap() {
        var rng = SplitMix(state: 9113)
        var failures = 0
        for _ in 0..<3_000 {
            let client = GRPCClient(GRPCClient.Settings(authority: "x:1", userAgent: Array("t".utf8)))
            client.receive(settingsFrame())
            let call = client.startCall(path: Health.checkPath, request: [])
            // A plausible frame header with a random type, flags, stream and payload, a few times.
            for _ in 0..<4 {
                let payload = randomBytes(&rng, max: 40)
                let type = UInt8.random(in: 0...10, using: &rng)
                let flags = UInt8.random(in: 0...255, using: &rng)
                let stream = UInt32.random(in: 0...3, using: &rng)
                client.receive(Frame(type: type, flags: flags, streamID: stream, payload: payload).serialized())
            }
            if client.connectionFailure != nil || call.status != nil { failures += 1 }
        }
        XCTAssertGreaterThan(failures, 0)
    }

    func testProtobufReaderNeverTraps() {
        var rng = SplitMix(state: 1)
        for _ in 0..<20_000 {
            _ = try? Health.decodeResponse(randomBytes(&rng, max: 24))
        }
    }
}
