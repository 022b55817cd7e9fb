import XCTest
@testable import Flags

final class GoDurationTests: XCTestCase {
    func testParsesLikeGo() throws {
        let cases: [(String, Int64)] = [
            ("0", 0), ("5s", 5_000_000_000), ("30s", 30_000_000_000), ("1478s", 1_478_000_000_000),
            ("-5s", -5_000_000_000), ("+5s", 5_000_000_000), ("-0", 0), ("+0", 0),
            ("5.0s", 5_000_000_000), ("5.6s", 5_600_000_000), ("5.s", 5_000_000_000), (".5s", 500_000_000),
            ("1.004s", 1_004_000_000), ("1.0040s", 1_004_000_000), ("100.00100s", 100_001_000_000),
            ("10ns", 10), ("11us", 11_000), ("12µs", 12_000), ("12μs", 12_000), ("13ms", 13_000_000),
            ("14s", 14_000_000_000), ("15m", 900_000_000_000), ("16h", 57_600_000_000_000),
            ("3h30m", 12_600_000_000_000), ("10.5s4m", 250_500_000_000), ("-2m3.4s", -123_400_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006), ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000), ("0.3333333333333333333h", 1_200_000_000_000),
            ("9007199254740993ns", 9_007_199_254_740_993), ("9223372036854775807ns", Int64.max),
            ("9223372036854775.807us", Int64.max), ("-9223372036854775808ns", Int64.min),
            ("0.100000000000000000000h", 360_000_000_000), ("0.830103483285477580700h", 2_988_372_539_827),
        ]
        for (text, nanos) in cases {
            XCTAssertEqual(try GoDuration.parse(text).nanoseconds, nanos, text)
        }
    }

    func testRejectsLikeGo() {
        for bad in ["", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "\u{0}", "3000000h", "9223372036854775808ns",
                    "9223372036854775.808us", "9223372036854ms775us808ns", "1.5", "abc", "1s1"] {
            XCTAssertThrowsError(try GoDuration.parse(bad), bad)
        }
    }

    /// The ends of Go's range: 2^63 ns is Int64.min only with a minus; a sum of two 2^63 wraps to
    /// 0 in Go's uint64 and is taken as 0s there (go1.19 to current), so it is here, not a trap.
    func testTheEndsOfTheRangeAsGoHasThem() throws {
        let cases: [(String, Int64)] = [
            ("2562047h47m16.854775807s", Int64.max), ("-2562047h47m16.854775808s", Int64.min),
            ("2562047h47m16854775807ns", Int64.max), ("-2562047h47m16854775808ns", Int64.min),
            ("+9223372036854775807ns", Int64.max), ("1ns", 1), ("-1ns", -1),
            ("9223372036854775808ns9223372036854775808ns", 0), ("-9223372036854775808ns9223372036854775808ns", 0),
            ("9223372036854775808ns9223372036854775808ns1ns", 1),
        ]
        for (text, nanos) in cases {
            XCTAssertEqual(try GoDuration.parse(text).nanoseconds, nanos, text)
        }
        for bad in ["2562047h47m16.854775808s", "-2562047h47m16.854775809s", "9223372036854775808ns1ns",
                    "-9223372036854775808ns1ns", "9223372036854775807ns1ns", "2562048h", "-2562048h",
                    "99999999999999999999ns", "2562047h47m16.854775808s2562047h47m16.854775808s"] {
            XCTAssertThrowsError(try GoDuration.parse(bad), bad)
        }
        XCTAssertEqual(try GoDuration.parse(GoDuration(nanoseconds: .max).description).nanoseconds, .max)
        XCTAssertEqual(try GoDuration.parse(GoDuration(nanoseconds: .min).description).nanoseconds, .min)
    }

    func testPrintsLikeGo() {
        let cases: [(Int64, String)] = [
            (0, "0s"), (1, "1ns"), (1_100, "1.1µs"), (2_200_000, "2.2ms"), (3_300_000_000, "3.3s"),
            (60_000_000_000, "1m0s"), (90_000_000_000, "1m30s"), (1_500_000_000, "1.5s"), (300_000_000, "300ms"),
            (4 * 60_000_000_000 + 5_000_000_000, "4m5s"), (4 * 60_000_000_000 + 5_001_000_000, "4m5.001s"),
            (5 * 3_600_000_000_000 + 6 * 60_000_000_000 + 7_001_000_000, "5h6m7.001s"),
            (8 * 60_000_000_000 + 1, "8m0.000000001s"), (Int64.max, "2562047h47m16.854775807s"),
            (Int64.min, "-2562047h47m16.854775808s"), (-1_000_000_000, "-1s"), (1_083_452, "1.083452ms"),
        ]
        for (nanos, text) in cases {
            XCTAssertEqual(GoDuration(nanoseconds: nanos).description, text)
        }
    }
}

final class FlagSetTests: XCTestCase {
    let addr = Flag<String>("addr", usage: "address")
    let timeout = Flag<GoDuration>("timeout", default: .second, usage: "timeout")
    let tls = Flag<Bool>("tls", usage: "tls")
    let header = Flag<[String]>("header", usage: "h", validate: { $0.contains(":") ? nil : "bad header" })
    let processGroup = Flag<Bool>("process-group", aliases: ["g"], usage: "group")
    var set: FlagSet { FlagSet([addr.definition, timeout.definition, tls.definition, header.definition, processGroup.definition]) }

    func testDashesValuesAndTermination() throws {
        let p = try set.parse(["--addr=x:1", "-timeout", "2s", "-tls", "--header", "a: b", "-header=c:d", "-g", "cmd", "-tls"])
        XCTAssertEqual(p[addr], "x:1")
        XCTAssertEqual(p[timeout].nanoseconds, 2_000_000_000)
        XCTAssertTrue(p[tls])
        XCTAssertTrue(p[processGroup])
        XCTAssertTrue(p.isGiven(processGroup), "given by its alias")
        XCTAssertFalse(try set.parse([]).isGiven(tls))
        XCTAssertEqual(p[header], ["a: b", "c:d"])
        XCTAssertEqual(p.remaining, ["cmd", "-tls"])
        XCTAssertEqual(try set.parse(["-tls", "--", "-addr"]).remaining, ["-addr"])
        XCTAssertEqual(try set.parse(["-", "-tls"]).remaining, ["-", "-tls"])
    }

    /// A key reads its default when nothing set it, and when its flag is not in the set at all.
    func testKeysReadTheirDefaults() throws {
        let p = try set.parse(["cmd"])
        XCTAssertEqual(p[timeout], .second)
        XCTAssertEqual(p[addr], "")
        XCTAssertEqual(p[header], [])
        let elsewhere = Flag<GoDuration>("elsewhere", default: GoDuration(nanoseconds: 7), usage: "not in the set")
        XCTAssertEqual(p[elsewhere].nanoseconds, 7)
        var values = set.defaults()
        tls.set(true, in: &values)
        XCTAssertTrue(try set.parse(["cmd"], startingWith: values)[tls])
    }

    /// What was not set is not stored: parsing the usual few flags fills in no default.
    func testValuesHoldOnlyWhatWasSet() throws {
        XCTAssertEqual(try set.parse(["-tls", "-addr", "x:1"]).values.keys.sorted(), ["addr", "tls"])
        XCTAssertEqual(try set.parse([]).values.count, 0)
        let list = FlagSet([.init("list", .list(validate: { _ in nil }), default: .list(["a"]), usage: "l")])
        XCTAssertEqual(try list.parse(["-list", "b"]).values["list"], .list(["a", "b"]), "a list adds to its default")
    }

    func testRawValuesAreReadByKey() {
        let raw = set.rawValues(of: [addr.definition, header.definition], in: [Array("-addr".utf8), [0xFF, 0x3A], Array("-header=a:b".utf8), Array("-tls".utf8), Array("-header".utf8), Array("c: d".utf8)])
        XCTAssertEqual(raw[addr], [[0xFF, 0x3A]])
        XCTAssertEqual(raw[header], [Array("a:b".utf8), Array("c: d".utf8)])
        XCTAssertEqual(raw[tls], [], "not asked for")
    }

    /// Read on past a name `parse` refuses, which takes no value; stopped where `parse` stops.
    func testRawValuesAreFoundInArgumentsThatDoNotParse() {
        func addrs(_ arguments: [String]) -> [String] {
            set.rawValues(of: [addr.definition], in: arguments.map { Array($0.utf8) })[addr].map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(addrs(["-bogus", "-addr", "a", "--bogus=1", "--addr=b"]), ["a", "b"])
        XCTAssertEqual(addrs(["-bogus", "cmd", "-addr", "a"]), [])
        XCTAssertEqual(addrs(["-bogus", "--", "-addr", "a"]), [])
        XCTAssertThrowsError(try set.parse(["-bogus", "-addr", "a"]))
    }

    /// How one text holds several values of a list is the list flag's own.
    func testEachSplittingOfAList() {
        let text = " a, b c,,d ,"
        XCTAssertEqual(FlagSet.Splitting.commasOrSpaces.split(text), ["a", "b", "c", "d"])
        XCTAssertEqual(FlagSet.Splitting.commas.split(text), ["a", "b c", "d "])
        XCTAssertEqual(FlagSet.Splitting.commasKeepingEmpty.split(text), ["a", "b c", "", "d", ""])
        let list = Flag<[String]>("list", splitting: .commas, usage: "u", validate: { _ in nil })
        XCTAssertEqual(FlagSet([list.definition]).flags.first?.splitting, .commas)
    }

    func testBooleansTakeOnlyAttachedValues() throws {
        for (text, value) in [("1", true), ("t", true), ("T", true), ("TRUE", true), ("true", true), ("True", true),
                              ("0", false), ("f", false), ("F", false), ("FALSE", false), ("false", false), ("False", false)] {
            XCTAssertEqual(try set.parse(["-tls=\(text)"])[tls], value, text)
        }
        let p = try set.parse(["-tls", "false"])
        XCTAssertTrue(p[tls])
        XCTAssertEqual(p.remaining, ["false"])
    }

    func testGoMessages() {
        func message(_ args: [String]) -> FlagSet.ParseError? {
            do { _ = try set.parse(args); return nil } catch { return error }
        }
        XCTAssertEqual(message(["-nosuchflag"]), .invalid("flag provided but not defined: -nosuchflag"))
        XCTAssertEqual(message(["-timeout", "abc"]), .invalid("invalid value \"abc\" for flag -timeout: parse error"))
        XCTAssertEqual(message(["-tls=maybe"]), .invalid("invalid boolean value \"maybe\" for -tls: parse error"))
        XCTAssertEqual(message(["-header", "x"]), .invalid("invalid value \"x\" for flag -header: bad header"))
        XCTAssertEqual(message(["-addr"]), .invalid("flag needs an argument: -addr"))
        XCTAssertEqual(message(["---addr"]), .invalid("bad flag syntax: ---addr"))
        XCTAssertEqual(message(["-=x"]), .invalid("bad flag syntax: -=x"))
        XCTAssertEqual(message(["-h"]), .help)
        XCTAssertEqual(message(["--help"]), .help)
    }

    func testUsageLayoutIsGos() {
        let usage = FlagSet([
            .init("v", .bool, usage: "verbose logs"),
            .init("addr", .string, usage: "address"),
            .init("user-agent", .string, default: .string("probe"), usage: "agent"),
            .init("rpc-timeout", .duration, default: .duration(.second), usage: "rpc"),
        ]).usage()
        XCTAssertEqual(usage, """
          -addr string
            \taddress
          -rpc-timeout duration
            \trpc (default 1s)
          -user-agent string
            \tagent (default "probe")
          -v\tverbose logs

        """)
    }

    func testGoQuote() {
        XCTAssertEqual(goQuote("abc"), "\"abc\"")
        XCTAssertEqual(goQuote("a\"b\\c"), "\"a\\\"b\\\\c\"")
        XCTAssertEqual(goQuote("tab\there\n"), "\"tab\\there\\n\"")
        XCTAssertEqual(goQuote("\u{1}"), "\"\\x01\"")
        XCTAssertEqual(goQuote("café"), "\"café\"")
    }
}

final class EscapingTests: XCTestCase {
    func testControlCharactersAreEscapedAndTheRestKept() {
        XCTAssertEqual(escapingControlCharacters("plain café ✓"), "plain café ✓")
        XCTAssertEqual(escapingControlCharacters("a\nb\rc\td\u{1B}[2J\u{7F}\u{9B}e"), "a\\nb\\rc\\td\\x1b[2J\\x7f\\u009be")
    }
}

final class ASCIITests: XCTestCase {
    func testHexDigitValues() {
        let digits = Array("0123456789abcdef".utf8)
        for byte in UInt8.min...UInt8.max {
            let expected = digits.firstIndex(of: byte) ?? Array("0123456789ABCDEF".utf8).firstIndex(of: byte)
            XCTAssertEqual(ASCII.hexDigitValue(byte).map(Int.init), expected, "byte \(byte)")
        }
    }

    func testSpacesTrimmedAtEitherEnd() {
        XCTAssertEqual(" \t a b \t ".trimmingASCIISpaces(), "a b")
        XCTAssertEqual("\ta b\t".trimmingASCIISpaces(tabs: false), "\ta b\t")
        XCTAssertEqual("  a  ".trimmingASCIISpaces(tabs: false), "a")
        XCTAssertEqual(" \t ".trimmingASCIISpaces(), "")
        XCTAssertEqual("".trimmingASCIISpaces(), "")
        XCTAssertEqual("a=b ".split(separator: "=")[1].trimmingASCIISpaces(), "b", "a Substring")
        XCTAssertEqual(" \u{301}a\u{A0}".trimmingASCIISpaces(), " \u{301}a\u{A0}", "a space a mark follows, and a no-break space, are not spaces")
    }
}
