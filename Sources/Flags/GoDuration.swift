/// A signed span of nanoseconds that parses and prints exactly as Go's time.Duration does,
/// so that flag values and messages read the same as the reference tool's.
public struct GoDuration: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let second = GoDuration(nanoseconds: 1_000_000_000)

    public static func < (a: GoDuration, b: GoDuration) -> Bool { a.nanoseconds < b.nanoseconds }

    public enum ParseError: Error, Equatable { case invalid, unknownUnit, overflow }

    private static let units: [(String, UInt64)] = [
        ("ns", 1), ("us", 1_000), ("\u{00B5}s", 1_000), ("\u{03BC}s", 1_000), ("ms", 1_000_000),
        ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]

    /// Go's time.ParseDuration: "300ms", "-1.5h", "2h45m"; "0" alone needs no unit.
    public static func parse(_ text: String) throws(ParseError) -> GoDuration {
        var s = Substring(text).utf8[...]
        var negative = false
        if let c = s.first, c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
            negative = c == UInt8(ascii: "-")
            s = s.dropFirst()
        }
        if s.elementsEqual("0".utf8) { return GoDuration(nanoseconds: 0) }
        if s.isEmpty { throw .invalid }
        let limit: UInt64 = 1 << 63
        var total: UInt64 = 0
        func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        while !s.isEmpty {
            guard let first = s.first, first == UInt8(ascii: ".") || isDigit(first) else { throw .invalid }
            // Integer part.
            var whole: UInt64 = 0
            var sawWhole = false
            while let c = s.first, isDigit(c) {
                if whole > (limit - 1) / 10 { throw .overflow }
                whole = whole * 10 + UInt64(c - 48)
                if whole > limit { throw .overflow }
                s = s.dropFirst()
                sawWhole = true
            }
            // Fraction: digits beyond what fits are dropped, as Go does.
            var fraction: UInt64 = 0
            var scale: Double = 1
            var sawFraction = false
            if s.first == UInt8(ascii: ".") {
                s = s.dropFirst()
                var overflowed = false
                while let c = s.first, isDigit(c) {
                    sawFraction = true
                    if !overflowed {
                        if fraction > (limit - 1) / 10 { overflowed = true } else {
                            let next = fraction * 10 + UInt64(c - 48)
                            if next > limit { overflowed = true } else { fraction = next; scale *= 10 }
                        }
                    }
                    s = s.dropFirst()
                }
            }
            if !sawWhole && !sawFraction { throw .invalid }
            var unitEnd = s.startIndex
            while unitEnd < s.endIndex, s[unitEnd] != UInt8(ascii: "."), !isDigit(s[unitEnd]) {
                unitEnd = s.index(after: unitEnd)
            }
            if unitEnd == s.startIndex { throw .invalid }
            let unitText = String(decoding: s[s.startIndex..<unitEnd], as: UTF8.self)
            s = s[unitEnd...]
            guard let unit = units.first(where: { $0.0 == unitText })?.1 else { throw .unknownUnit }
            if whole > limit / unit { throw .overflow }
            var value = whole * unit
            if fraction > 0 {
                value += UInt64(Double(fraction) * (Double(unit) / scale))
                if value > limit { throw .overflow }
            }
            // Both are at most 2^63, so the sum fits unless both are exactly 2^63: Go's uint64
            // sum wraps to 0 there and is taken, and so is this one, so that the same text
            // gives the same span (a trap would end the process).
            total &+= value
            if total > limit { throw .overflow }
        }
        if negative { return GoDuration(nanoseconds: total == limit ? Int64.min : -Int64(total)) }
        if total > limit - 1 { throw .overflow }
        return GoDuration(nanoseconds: Int64(total))
    }

    /// Go's Duration.String: "1h2m0.5s", "1.5ms", "0s".
    public var description: String {
        var magnitude = nanoseconds.magnitude
        var out: [UInt8] = []  // built backwards
        func fraction(_ precision: Int) {
            var printing = false
            for _ in 0..<precision {
                let digit = UInt8(magnitude % 10)
                printing = printing || digit != 0
                if printing { out.append(48 + digit) }
                magnitude /= 10
            }
            if printing { out.append(UInt8(ascii: ".")) }
        }
        func integer(_ v: UInt64) {
            var v = v
            if v == 0 { out.append(48); return }
            while v > 0 { out.append(48 + UInt8(v % 10)); v /= 10 }
        }
        if magnitude == 0 { return "0s" }
        out.append(UInt8(ascii: "s"))
        if magnitude < 1_000_000_000 {
            // Below one second: a single unit (ns, µs or ms) with a fraction.
            let precision: Int
            if magnitude < 1_000 {
                out.append(UInt8(ascii: "n"))
                precision = 0
            } else if magnitude < 1_000_000 {
                out.append(contentsOf: [0xB5, 0xC2])  // "µ", bytes reversed
                precision = 3
            } else {
                out.append(UInt8(ascii: "m"))
                precision = 6
            }
            fraction(precision)
            integer(magnitude)
        } else {
            fraction(9)
            integer(magnitude % 60)
            magnitude /= 60
            if magnitude > 0 {
                out.append(UInt8(ascii: "m"))
                integer(magnitude % 60)
                magnitude /= 60
                if magnitude > 0 {
                    out.append(UInt8(ascii: "h"))
                    integer(magnitude)
                }
            }
        }
        if nanoseconds < 0 { out.append(UInt8(ascii: "-")) }
        return String(decoding: out.reversed(), as: UTF8.self)
    }
}

extension GoDuration {
    /// Nanoseconds as a decimal number of seconds, exactly and without trailing zeros: 1.5,
    /// 0.25, 2 (any Int64, Int64.min included, renders without trapping). The JSON log's
    /// durations and /metrics' samples both read it.
    public static func decimalSeconds(_ nanoseconds: Int64) -> String {
        let magnitude = nanoseconds.magnitude
        var text = (nanoseconds < 0 ? "-" : "") + String(magnitude / 1_000_000_000)
        var fraction = magnitude % 1_000_000_000
        guard fraction != 0 else { return text }
        var width = 9
        while fraction % 10 == 0 {
            fraction /= 10
            width -= 1
        }
        let digits = String(fraction)
        text += "." + String(repeating: "0", count: width - digits.count) + digits
        return text
    }
}
