import Flags
import GateProtocol
import Glibc
import XCTest

/// Every field of the configuration's table, found by walking it: a field added to the table is
/// covered here without a line of its own.
private struct Table: GateFieldVisitor {
    enum Kind: Equatable { case string, bool, list(GateList), span(GateSpan), optionalSpan(GateSpan) }
    var fields: [(tag: UInt8, name: String, kind: Kind)] = []

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
        fields.append((tag, name, .string))
    }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {
        fields.append((tag, name, .bool))
    }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) { fields.append((tag, name, .list(rule))) }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) { fields.append((tag, name, .span(rule))) }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) { fields.append((tag, name, .optionalSpan(rule))) }

    static var all: [(tag: UInt8, name: String, kind: Kind)] {
        var table = Table()
        try? GateConfiguration.fields(&table)
        return table.fields
    }
}

/// Sets one field (by tag) of `configuration` to a value of its kind.
private struct Setter: GateFieldVisitor {
    let tag: UInt8
    var configuration = GateConfiguration()
    var string = ""
    var bool = false
    var list: [String] = []
    var span = GoDuration(nanoseconds: 0)
    var optionalSpan: GoDuration? = nil

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
        if tag == self.tag { configuration[keyPath: path] = string }
    }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {
        if tag == self.tag { configuration[keyPath: path] = bool }
    }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) { if tag == self.tag { configuration[keyPath: path] = list } }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) { if tag == self.tag { configuration[keyPath: path] = span } }
    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) { if tag == self.tag { configuration[keyPath: path] = optionalSpan } }

    /// `c` with the field set.
    mutating func apply(to c: inout GateConfiguration) {
        configuration = c
        try? GateConfiguration.fields(&self)
        c = configuration
    }
}

final class GateConfigurationTests: XCTestCase {
    /// The largest string the protocol carries, in characters of every UTF-8 length.
    static let longest = String(repeating: "a€😀é", count: GateFraming.maxString / 10) + String(repeating: "z", count: GateFraming.maxString % 10)

    /// The values at each end of a kind's range.
    private static func extremes(_ kind: Table.Kind, tag: UInt8) -> [Setter] {
        var out: [Setter] = []
        func with(_ change: (inout Setter) -> Void) { var s = Setter(tag: tag); change(&s); out.append(s) }
        switch kind {
        case .string:
            for text in ["", "x", longest, "\u{0}\n\u{7F}\u{85}"] { with { $0.string = text } }
        case .bool:
            for value in [false, true] { with { $0.bool = value } }
        case .list(let rule):
            let lists: [[String]] = [[""], ["a"], [longest], Array(repeating: "s", count: GateFraming.maxList),
                                     (0..<GateFraming.maxList).map { String(repeating: "\($0 % 10)", count: 400) }]
            for list in (rule == .nonEmpty ? lists : [[]] + lists) { with { $0.list = list } }
        case .span(let rule):
            for nanos in [rule == .positive ? 1 : 0, 1, Int64.max] { with { $0.span = GoDuration(nanoseconds: nanos) } }
        case .optionalSpan(let rule):
            for nanos in [nil, rule == .positive ? 1 : 0, Int64.max] { with { $0.optionalSpan = nanos.map { GoDuration(nanoseconds: $0) } } }
        }
        return out
    }

    private func configure(_ c: GateConfiguration) -> [UInt8] { Array(SupervisorMessage.configure(c).frame.dropFirst(4)) }

    private func decode(_ payload: [UInt8]) throws -> SupervisorMessage? { try SupervisorMessage.decode(kind: 1, payload: payload) }

    private func roundTrip(_ c: GateConfiguration, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
        let message = SupervisorMessage.configure(c)
        XCTAssertFalse(message.overflowsFrame, context, file: file, line: line)
        var decoder = GateFraming.Decoder()
        decoder.append(message.frame)
        do {
            let frame = try XCTUnwrap(try decoder.nextFrame())
            XCTAssertEqual(try SupervisorMessage.decode(kind: frame.kind, payload: frame.payload), message, context, file: file, line: line)
        } catch {
            XCTFail("\(context): \(error)", file: file, line: line)
        }
    }

    func testTheTableHasEveryTagOnceAndEveryNameOnce() {
        let table = Table.all
        XCTAssertEqual(Set(table.map(\.tag)).count, table.count)
        XCTAssertEqual(Set(table.map(\.name)).count, table.count)
        XCTAssertTrue(table.allSatisfy { $0.tag > 0 && $0.tag < 64 })
    }

    func testEveryFieldRoundTripsAtItsExtremes() {
        for field in Table.all {
            for var setter in Self.extremes(field.kind, tag: field.tag) {
                var c = GateConfiguration()
                setter.apply(to: &c)
                roundTrip(c, "\(field.name) = \(setter)")
            }
        }
    }

    func testEveryFieldAtOnceRoundTrips() {
        var c = GateConfiguration()
        for field in Table.all {
            guard var setter = Self.extremes(field.kind, tag: field.tag).last(where: { _ in true }) else { continue }
            // Short values, so that all of them fit one frame.
            setter.string = "v\(field.tag)"
            setter.list = ["a: b", "c"]
            setter.apply(to: &c)
        }
        XCTAssertNotEqual(c, GateConfiguration())
        roundTrip(c, "every field")
    }

    /// A configuration left at its defaults costs a byte: the agent's start reads next to nothing.
    func testDefaultsAreNotSent() {
        XCTAssertEqual(configure(GateConfiguration()), [0])
        var c = GateConfiguration()
        c.spiffe = true
        XCTAssertEqual(configure(c).count, 3)
    }

    func testEveryTruncationIsRefused() throws {
        var c = GateConfiguration()
        c.addr = "localhost:50051"
        c.services = ["db", "api"]
        c.tls.tls = true
        c.tls.caCert = "/ca.pem"
        c.exitUnhealthyAfter = GoDuration(nanoseconds: 5)
        c.answerInterval = GoDuration(nanoseconds: 3)
        c.rpcHeaders = ["a: b"]
        let payload = configure(c)
        XCTAssertEqual(try decode(payload), .configure(c))
        for length in 0..<payload.count {
            XCTAssertThrowsError(try decode(Array(payload.prefix(length))), "cut at \(length)") {
                XCTAssertEqual($0 as? GateFraming.Failure, .truncated(kind: 1), "cut at \(length)")
            }
        }
        XCTAssertThrowsError(try decode(payload + [0])) { XCTAssertEqual($0 as? GateFraming.Failure, .malformed(kind: 1)) }
    }

    func testUnknownTagsAreRefused() {
        let known = Set(Table.all.map(\.tag))
        for tag in UInt8.min...UInt8.max where !known.contains(tag) {
            XCTAssertThrowsError(try decode([1, tag, 0, 0, 0, 0, 0, 0, 0, 1]), "tag \(tag)") {
                XCTAssertEqual($0 as? GateFraming.Failure, .unknownField(kind: 1, tag: tag), "tag \(tag)")
            }
        }
    }

    func testFieldsTwiceOrOutOfRangeAreRefused() {
        var c = GateConfiguration()
        c.spiffe = true
        let once = configure(c)
        XCTAssertThrowsError(try decode([2] + once.dropFirst() + once.dropFirst())) { XCTAssertEqual($0 as? GateFraming.Failure, .malformed(kind: 1)) }
        for field in Table.all {
            var bad: [UInt8]
            switch field.kind {
            case .bool: bad = [2]
            case .span(.positive): bad = [0, 0, 0, 0, 0, 0, 0, 0]
            case .span(.nonNegative): bad = [0x80, 0, 0, 0, 0, 0, 0, 0]
            case .optionalSpan(.positive): bad = [1, 0, 0, 0, 0, 0, 0, 0, 0]
            case .optionalSpan(.nonNegative): bad = [1, 0xFF, 0, 0, 0, 0, 0, 0, 0]
            case .list(.nonEmpty): bad = [0]
            case .list(.any): bad = [UInt8(GateFraming.maxList + 1)]
            case .string: bad = [0x10, 0x01]
            }
            XCTAssertThrowsError(try decode([1, field.tag] + bad), field.name) {
                XCTAssertEqual($0 as? GateFraming.Failure, .malformed(kind: 1), field.name)
            }
        }
    }

    /// Random configurations over one pipe, with drains between them, in random pieces: each
    /// arrives as it was sent. Then the same bytes damaged: the decoder refuses them with its
    /// error or decodes what encodes back the same; it never traps.
    func testRandomConfigurationsOverAPipeAndDamaged() throws {
        var generator = SystemRandomNumberGenerator()
        let table = Table.all
        for _ in 0..<300 {
            var sent: [SupervisorMessage] = []
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                var c = GateConfiguration()
                for field in table where Bool.random(using: &generator) {
                    var setter = Self.extremes(field.kind, tag: field.tag).randomElement(using: &generator)!
                    if setter.string.utf8.count > 64 { setter.string = String(setter.string.prefix(64)) }
                    setter.list = Array(setter.list.prefix(3).map { String($0.prefix(32)) })
                    if case .list(.nonEmpty) = field.kind, setter.list.isEmpty { setter.list = [""] }
                    setter.apply(to: &c)
                }
                sent.append(.configure(c))
                if Bool.random(using: &generator) { sent.append(.drain) }
            }
            let bytes = sent.flatMap(\.frame)
            var decoder = GateFraming.Decoder()
            var received: [SupervisorMessage] = []
            var offset = 0
            while offset < bytes.count {
                let piece = min(bytes.count - offset, Int.random(in: 1...64, using: &generator))
                decoder.append(bytes[offset..<offset + piece])
                offset += piece
                while let frame = try decoder.nextFrame() {
                    if let message = try SupervisorMessage.decode(kind: frame.kind, payload: frame.payload) { received.append(message) }
                }
            }
            XCTAssertEqual(received, sent)

            var damaged = sent[0].frame
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                switch Int.random(in: 0..<3, using: &generator) {
                case 0:
                    let index = Int.random(in: 4..<max(5, damaged.count), using: &generator)
                    if index < damaged.count { damaged[index] = UInt8.random(in: 0...255, using: &generator) }
                case 1:
                    if damaged.count > 4 { damaged.remove(at: Int.random(in: 4..<damaged.count, using: &generator)) }
                default:
                    damaged.insert(UInt8.random(in: 0...255, using: &generator), at: Int.random(in: 4...damaged.count, using: &generator))
                }
            }
            let payload = Array(damaged.dropFirst(4))
            do {
                guard let message = try SupervisorMessage.decode(kind: 1, payload: payload) else { continue }
                XCTAssertEqual(try decode(Array(message.frame.dropFirst(4))), message)
            } catch {
                // Damaged bytes may be refused (the throw is typed: a GateFraming.Failure); they must not crash.
            }
        }
    }

    func testTheDrainIsSIGTERMsWithADelay() {
        XCTAssertFalse(Drain().drains(SIGTERM), "no delay: SIGTERM passes on at once")
        let drain = Drain(delay: GoDuration(nanoseconds: 5))
        XCTAssertTrue(drain.drains(SIGTERM))
        XCTAssertFalse(drain.drains(SIGINT))
        XCTAssertEqual(drain.ends(from: 10), 15)
        XCTAssertEqual(Drain(delay: GoDuration(nanoseconds: .max)).ends(from: 10), .max, "Go's largest delay: never")
    }
}
