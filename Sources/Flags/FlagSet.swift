/// Command-line flags parsed the way Go's `flag` package parses them: `-name` and `--name` alike,
/// `-name=value` or `-name value`, booleans only as `-name` or `-name=BOOL`, parsing stops at
/// the first non-flag argument or after `--`.
public struct FlagSet: Sendable {
    public enum Kind: Sendable {
        case bool
        case string
        case duration
        /// Repeatable; `validate` returns Go's error text for a bad value, or nil.
        case list(validate: @Sendable (String) -> String?)
    }

    public enum Value: Equatable, Sendable {
        case bool(Bool)
        case string(String)
        case duration(GoDuration)
        case list([String])
    }

    /// A class, not a struct: a flag is read (its name, its kind) far more often than made, and
    /// each copy of a struct of this many fields is a call through its value witnesses.
    public final class Flag: Sendable {
        public let name: String
        public let kind: Kind
        public let defaultValue: Value
        public let usage: String
        /// Shown after the name in the usage, e.g. "string", "duration", "CODE".
        public let placeholder: String?
        /// Other names for the same flag (tini's one-letter flags).
        public let aliases: [String]
        /// How one text (an environment variable's) holds several values of a list.
        public let splitting: Splitting

        public init(_ name: String, _ kind: Kind, default defaultValue: Value? = nil, placeholder: String? = nil,
                    aliases: [String] = [], splitting: Splitting = .commasOrSpaces, usage: String) {
            self.name = name
            self.aliases = aliases
            self.splitting = splitting
            self.kind = kind
            self.usage = usage
            self.placeholder = placeholder
            switch kind {
            case .bool: self.defaultValue = defaultValue ?? .bool(false)
            case .string: self.defaultValue = defaultValue ?? .string("")
            case .duration: self.defaultValue = defaultValue ?? .duration(GoDuration(nanoseconds: 0))
            case .list: self.defaultValue = defaultValue ?? .list([])
            }
        }
    }

    /// How one text holds several values of a list flag.
    public enum Splitting: Sendable {
        /// Separated by commas or spaces; nothing between two separators is no value.
        case commasOrSpaces
        /// Separated by commas only (a value may hold spaces), each value's leading spaces
        /// dropped; nothing between two commas is no value.
        case commas
        /// Separated by commas only, each value trimmed of spaces; nothing between two commas is
        /// an empty value, for the flag to refuse ("a,,b" is a mistake, not three values).
        case commasKeepingEmpty

        public func split(_ text: String) -> [String] {
            switch self {
            case .commasOrSpaces:
                return text.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            case .commas:
                return text.split(separator: ",").map { String($0.drop(while: { $0 == " " })) }
            case .commasKeepingEmpty:
                return text.split(separator: ",", omittingEmptySubsequences: false)
                    .map { $0.trimmingASCIISpaces(tabs: false) }
            }
        }
    }

    public enum ParseError: Error, Equatable {
        /// -h or -help was asked for and is not a defined flag.
        case help
        /// Go's message for the failure (the usage follows it).
        case invalid(String)
    }

    public struct Parsed: Sendable {
        /// The values set, by the arguments or before them (`startingWith`); a flag not here has
        /// its default.
        public var values: [String: Value]
        /// Arguments after the flags (after `--` when it ended them).
        public var remaining: [String]
        /// The flags the arguments set (by their names, not their aliases).
        public var given: Set<String> = []

        /// The value `flag` was given, or its default.
        @inlinable public subscript<V>(_ flag: Flags.Flag<V>) -> V { values[flag.name].flatMap(V.init) ?? flag.defaultValue }

        /// Whether the arguments set `flag` (by its name or an alias).
        @inlinable public func isGiven<V>(_ flag: Flags.Flag<V>) -> Bool { given.contains(flag.name) }
    }

    public let flags: [Flag]

    public init(_ flags: [Flag]) { self.flags = flags }

    public func flag(named name: String) -> Flag? { flags.first { $0.name == name || $0.aliases.contains(name) } }

    /// Go's strconv.ParseBool.
    public static func parseBool(_ text: String) -> Bool? {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True": return true
        case "0", "f", "F", "false", "FALSE", "False": return false
        default: return nil
        }
    }

    /// Sets `flag` from `text` in `values`; returns Go's error text on failure.
    public static func assign(_ flag: Flag, _ text: String, into values: inout [String: Value]) -> String? {
        switch flag.kind {
        case .bool:
            guard let b = parseBool(text) else { return "parse error" }
            values[flag.name] = .bool(b)
        case .string:
            values[flag.name] = .string(text)
        case .duration:
            guard let d = try? GoDuration.parse(text) else { return "parse error" }
            values[flag.name] = .duration(d)
        case .list(let validate):
            if let problem = validate(text) { return problem }
            var current: [String] = []
            if case .list(let l) = values[flag.name] ?? flag.defaultValue { current = l }
            values[flag.name] = .list(current + [text])
        }
        return nil
    }

    public func defaults() -> [String: Value] {
        var values: [String: Value] = Dictionary(minimumCapacity: flags.count)
        for f in flags { values[f.name] = f.defaultValue }
        return values
    }

    /// Parses flags with Go's `flag` syntax: one or two dashes, `-name=value` or `-name value`,
    /// parsing stops at the first argument that is not a flag or after `--`. With
    /// `bundlingLetters`, a single dash before what is not a defined name also reads as getopt
    /// reads it: one-letter flags bundled (`-sgv`, `-vvv`), the last of them taking the rest as
    /// its value (`-e143`, `-pSIGKILL`) or the next argument.
    public func parse(_ arguments: [String], startingWith initial: [String: Value]? = nil,
                      bundlingLetters: Bool = false) throws(ParseError) -> Parsed {
        // A flag not in `values` reads as its default.
        var values = initial ?? [:]
        var given: Set<String> = []
        var args = arguments[...]
        while let s = args.first {
            let chars = Array(s.utf8)
            if chars.count < 2 || chars[0] != UInt8(ascii: "-") { break }
            var dashes = 1
            if chars[1] == UInt8(ascii: "-") {
                dashes = 2
                if chars.count == 2 { args = args.dropFirst(); break }
            }
            var name = String(decoding: chars[dashes...], as: UTF8.self)
            if name.isEmpty || name.hasPrefix("-") || name.hasPrefix("=") {
                throw .invalid("bad flag syntax: \(s)")
            }
            args = args.dropFirst()
            if bundlingLetters && dashes == 1 && flag(named: String(name.prefix { $0 != "=" })) == nil
                && name.count > 1 && flag(named: String(name.first!))?.name.count ?? 0 > 1 {
                try parseBundle(name, &args, &values, &given)
                continue
            }
            var value: String? = nil
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let flag = flag(named: name) else {
                if name == "help" || name == "h" { throw .help }
                throw .invalid("flag provided but not defined: -\(name)")
            }
            given.insert(flag.name)
            if case .bool = flag.kind {
                if let value {
                    if FlagSet.assign(flag, value, into: &values) != nil {
                        throw .invalid("invalid boolean value \(goQuote(value)) for -\(name): parse error")
                    }
                } else {
                    values[flag.name] = .bool(true)
                }
            } else {
                if value == nil, let next = args.first {
                    value = next
                    args = args.dropFirst()
                }
                guard let value else { throw .invalid("flag needs an argument: -\(name)") }
                if let problem = FlagSet.assign(flag, value, into: &values) {
                    throw .invalid("invalid value \(goQuote(value)) for flag -\(name): \(problem)")
                }
            }
        }
        return Parsed(values: values, remaining: Array(args), given: given)
    }

    /// The values the arguments gave `flags`, byte for byte, in order: `arguments` are the bytes
    /// of what `parse` read as text (Go's flag package keeps a value's bytes; text made from
    /// bytes that are not UTF-8 would not). Read with `parse`'s grammar, without bundling, and
    /// read on past what `parse` refuses (a name not defined takes no value), so that a flag
    /// is found in arguments that do not parse.
    public func rawValues(of flags: [Flag], in arguments: [[UInt8]]) -> RawValues {
        RawValues(found: rawValues(of: flags.map(\.name), in: arguments))
    }

    /// The values `rawValues` found, read by each flag's key.
    public struct RawValues: Sendable {
        let found: [String: [[UInt8]]]
        /// What the arguments gave `flag`, in order (empty: nothing).
        public subscript<V>(_ flag: Flags.Flag<V>) -> [[UInt8]] { found[flag.name] ?? [] }
    }

    func rawValues(of names: [String], in arguments: [[UInt8]]) -> [String: [[UInt8]]] {
        var found: [String: [[UInt8]]] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.count >= 2, argument[0] == UInt8(ascii: "-") else { break }
            let dashes = argument[1] == UInt8(ascii: "-") ? 2 : 1
            if dashes == 2 && argument.count == 2 { break }
            index += 1
            let body = argument[dashes...]
            let equals = body.firstIndex(of: UInt8(ascii: "="))
            guard let flag = flag(named: String(decoding: body[..<(equals ?? body.endIndex)], as: UTF8.self)) else { continue }
            var value: [UInt8]? = equals.map { Array(body[($0 + 1)...]) }
            if case .bool = flag.kind {} else if value == nil, index < arguments.count {
                value = arguments[index]
                index += 1
            }
            if let value, names.contains(flag.name) { found[flag.name, default: []].append(value) }
        }
        return found
    }

    /// One argument of bundled one-letter flags, as getopt reads it (the dash already gone).
    private func parseBundle(_ letters: String, _ args: inout ArraySlice<String>, _ values: inout [String: Value],
                             _ given: inout Set<String>) throws(ParseError) {
        var rest = Substring(letters)
        while let letter = rest.first {
            rest = rest.dropFirst()
            guard let flag = flag(named: String(letter)) else {
                if letter == "h" { throw .help }
                throw .invalid("flag provided but not defined: -\(letter)")
            }
            given.insert(flag.name)
            if case .bool = flag.kind {
                values[flag.name] = .bool(true)
                continue
            }
            // The rest of the argument is the value, or else the next argument is.
            var value = String(rest)
            if value.isEmpty {
                guard let next = args.first else { throw .invalid("flag needs an argument: -\(letter)") }
                value = next
                args = args.dropFirst()
            }
            if let problem = FlagSet.assign(flag, value, into: &values) {
                throw .invalid("invalid value \(goQuote(value)) for flag -\(letter): \(problem)")
            }
            return
        }
    }

    /// Go's FlagSet.PrintDefaults layout, flags sorted by name.
    public func usage() -> String {
        var out = ""
        for f in flags.sorted(by: { $0.name < $1.name }) {
            var line = "  -" + ([f.name] + f.aliases).joined(separator: ", -")
            let placeholder: String
            switch f.kind {
            case .bool: placeholder = f.placeholder ?? ""
            case .string: placeholder = f.placeholder ?? "string"
            case .duration: placeholder = f.placeholder ?? "duration"
            case .list: placeholder = f.placeholder ?? "value"
            }
            if !placeholder.isEmpty { line += " " + placeholder }
            line += line.utf8.count <= 4 ? "\t" : "\n    \t"
            line += f.usage.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n    \t")
            switch f.defaultValue {
            case .string(let s) where !s.isEmpty: line += " (default \(goQuote(s)))"
            case .duration(let d) where d.nanoseconds != 0: line += " (default \(d))"
            case .bool(true): line += " (default true)"
            default: break
            }
            out += line + "\n"
        }
        return out
    }
}

/// A flag's declaration that is also the key its value is read with (`parsed[key]`): a flag that
/// is not declared has no key, so a misspelt one does not compile.
public struct Flag<Value: FlagValue>: Sendable {
    /// What a `FlagSet` is made of (`FlagSet([key.definition, ...])`).
    public let definition: FlagSet.Flag
    public let defaultValue: Value
    public var name: String { definition.name }

    /// Sets the flag in `values` (a starting point for `FlagSet.parse`).
    public func set(_ value: Value, in values: inout [String: FlagSet.Value]) { values[definition.name] = value.flagValue }
}

extension Flag where Value == Bool {
    public init(_ name: String, default value: Bool = false, aliases: [String] = [], usage: String) {
        definition = FlagSet.Flag(name, .bool, default: .bool(value), aliases: aliases, usage: usage)
        defaultValue = value
    }
}

extension Flag where Value == String {
    public init(_ name: String, default value: String = "", placeholder: String? = nil, aliases: [String] = [], usage: String) {
        definition = FlagSet.Flag(name, .string, default: .string(value), placeholder: placeholder, aliases: aliases, usage: usage)
        defaultValue = value
    }
}

extension Flag where Value == GoDuration {
    public init(_ name: String, default value: GoDuration = GoDuration(nanoseconds: 0), placeholder: String? = nil,
                aliases: [String] = [], usage: String) {
        definition = FlagSet.Flag(name, .duration, default: .duration(value), placeholder: placeholder, aliases: aliases, usage: usage)
        defaultValue = value
    }
}

extension Flag where Value == [String] {
    /// A repeatable flag; `validate` returns Go's error text for a bad value, or nil; `splitting`
    /// is how one environment variable holds several values.
    public init(_ name: String, placeholder: String? = nil, aliases: [String] = [], splitting: FlagSet.Splitting = .commasOrSpaces,
                usage: String, validate: @escaping @Sendable (String) -> String?) {
        definition = FlagSet.Flag(name, .list(validate: validate), default: .list([]), placeholder: placeholder, aliases: aliases,
                                  splitting: splitting, usage: usage)
        defaultValue = []
    }
}

/// What a flag can hold: a boolean, a string, a duration, or a list of strings.
public protocol FlagValue: Sendable {
    init?(_ value: FlagSet.Value)
    var flagValue: FlagSet.Value { get }
}

extension Bool: FlagValue {
    public init?(_ value: FlagSet.Value) {
        guard case .bool(let b) = value else { return nil }
        self = b
    }
    public var flagValue: FlagSet.Value { .bool(self) }
}

extension String: FlagValue {
    public init?(_ value: FlagSet.Value) {
        guard case .string(let s) = value else { return nil }
        self = s
    }
    public var flagValue: FlagSet.Value { .string(self) }
}

extension GoDuration: FlagValue {
    public init?(_ value: FlagSet.Value) {
        guard case .duration(let d) = value else { return nil }
        self = d
    }
    public var flagValue: FlagSet.Value { .duration(self) }
}

extension Array: FlagValue where Element == String {
    public init?(_ value: FlagSet.Value) {
        guard case .list(let l) = value else { return nil }
        self = l
    }
    public var flagValue: FlagSet.Value { .list(self) }
}
