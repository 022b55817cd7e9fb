/// The ASCII readings the parsers share: -addr's %XX escapes, an HTTP/1 target's, a
/// grpc-message's, and the spaces around an HTTP/1 header value, an Accept parameter and a
/// variable's list entry.
public enum ASCII {
    /// What the hex digit `c` (`0-9`, `a-f`, `A-F`) stands for, or nil.
    @inlinable public static func hexDigitValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
    }
}

extension StringProtocol {
    /// The text without the spaces (and, with `tabs`, the tabs) at either end. Characters are
    /// compared: a space that a combining mark follows is not a space, and stays.
    public func trimmingASCIISpaces(tabs: Bool = true) -> String {
        func isSpace(_ c: Character) -> Bool { c == " " || (tabs && c == "\t") }
        var text = self[...]
        while let first = text.first, isSpace(first) { text = text.dropFirst() }
        while let last = text.last, isSpace(last) { text = text.dropLast() }
        return String(text)
    }
}
