import XCTest
import Foundation

/// The short pass of the stateful fuzzing, in the test suite: every conversation kept in
/// Tests/fuzz/corpus/conversation (the crashes found so far among them), then conversations
/// from a fixed pseudo-random generator. scripts/fuzz.sh runs the long, coverage-guided pass.
final class ConversationTests: XCTestCase {
    private static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("corpus/conversation")

    func testTheKeptCorpus() throws {
        let files = try FileManager.default.contentsOfDirectory(at: ConversationTests.corpus, includingPropertiesForKeys: nil)
        XCTAssertGreaterThan(files.count, 0)
        for file in files {
            let input = [UInt8](try Data(contentsOf: file))
            XCTAssertNil(Conversation.run(input), file.lastPathComponent)
        }
    }

    func testGeneratedConversations() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        for round in 0..<3_000 {
            let length = Int(next() % 600)
            let input = (0..<length).map { _ in UInt8(truncatingIfNeeded: next()) }
            if let violation = Conversation.run(input) {
                return XCTFail("conversation \(round): \(violation): \(input)")
            }
        }
    }
}
