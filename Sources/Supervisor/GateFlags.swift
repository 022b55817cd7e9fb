import Flags
import GateProtocol

/// The gate's flags, as `GateConfiguration.fields` declares them.
struct GateFlagDefinitions: GateFieldVisitor {
    private let defaults = GateConfiguration()
    private(set) var flags: [FlagSet.Flag] = []

    static let all: [FlagSet.Flag] = {
        var walk = GateFlagDefinitions()
        try? GateConfiguration.fields(&walk)
        return walk.flags
    }()

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
        if let flag { flags.append(flag.key(name, default: defaults[keyPath: path]).definition) }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {
        if let flag { flags.append(flag.key(name, default: defaults[keyPath: path]).definition) }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) {
        if let flag { flags.append(flag.key(name).definition) }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        if let flag { flags.append(flag.key(name, default: defaults[keyPath: path]).definition) }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        if let flag { flags.append(flag.key(name, default: GoDuration(nanoseconds: 0)).definition) }
    }
}

/// The configuration the parsed flags give, each read by its key: a list given no value keeps
/// its field's default, an optional field is set only when its flag is given (`isGiven`: on the
/// command line or in the environment).
struct GateFlagValues: GateFieldVisitor {
    let parsed: FlagSet.Parsed
    let isGiven: (String) -> Bool
    private(set) var configuration = GateConfiguration()

    init(_ parsed: FlagSet.Parsed, isGiven: @escaping (String) -> Bool) {
        self.parsed = parsed
        self.isGiven = isGiven
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
        if let flag { configuration[keyPath: path] = parsed[flag.key(name, default: configuration[keyPath: path])] }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {
        if let flag { configuration[keyPath: path] = parsed[flag.key(name, default: configuration[keyPath: path])] }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) {
        guard let flag else { return }
        let values = parsed[flag.key(name)]
        if !values.isEmpty { configuration[keyPath: path] = values }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        if let flag { configuration[keyPath: path] = parsed[flag.key(name, default: configuration[keyPath: path])] }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        guard let flag else { return }
        let key = flag.key(name, default: GoDuration(nanoseconds: 0))
        if parsed.isGiven(key) || isGiven(name) { configuration[keyPath: path] = parsed[key] }
    }
}

/// The supervisor's checks of a configuration against each field's range and what the gate
/// protocol carries, in its words: the first problem, naming where the value came from.
struct GateLimits: GateFieldVisitor {
    let configuration: GateConfiguration
    let source: (String) -> String
    private(set) var problem: String?

    init(_ configuration: GateConfiguration, source: @escaping (String) -> String) {
        self.configuration = configuration
        self.source = source
    }

    private mutating func fail(_ text: String) { if problem == nil { problem = text } }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, String>, _ flag: GateFlag<String>?) {
        let value = configuration[keyPath: path]
        if value.utf8.count > GateFraming.maxString { fail("\(source(name)): a value of \(value.utf8.count) bytes; at most \(GateFraming.maxString)") }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, Bool>, _ flag: GateFlag<Bool>?) {}

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, [String]>, _ rule: GateList,
                        _ flag: GateFlag<[String]>?) {
        let value = configuration[keyPath: path]
        if value.count > GateFraming.maxList { fail("\(source(name)): at most \(GateFraming.maxList) values") }
        if let long = value.first(where: { $0.utf8.count > GateFraming.maxString }) {
            fail("\(source(name)): a value of \(long.utf8.count) bytes; at most \(GateFraming.maxString)")
        }
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        check(name, configuration[keyPath: path], rule)
    }

    mutating func field(_ tag: UInt8, _ name: String, _ path: WritableKeyPath<GateConfiguration, GoDuration?>, _ rule: GateSpan,
                        _ flag: GateFlag<GoDuration>?) {
        if let value = configuration[keyPath: path] { check(name, value, rule) }
    }

    private mutating func check(_ name: String, _ span: GoDuration, _ rule: GateSpan) {
        guard !rule.admits(span) else { return }
        switch rule {
        case .positive: fail("\(source(name)) must be greater than zero (specified: \(span))")
        case .nonNegative: fail("\(source(name)) must not be negative (specified: \(span))")
        }
    }
}
