import Flags

/// An HTTP/1.1 request head (RFC 9112), as a health endpoint reads it: the request line and
/// the header lines up to the blank line, within a size limit. Sans-IO: `parse` is given what
/// arrived so far.
public struct HTTP1Request: Equatable, Sendable {
    public var method: String
    /// The path without its query, percent-decoded.
    public var path: String
    /// The query's parameters in order, percent-decoded (`+` as a space).
    public var query: [(String, String)]
    public var version: String
    public var headers: [(String, String)]

    public static func == (a: HTTP1Request, b: HTTP1Request) -> Bool {
        a.method == b.method && a.path == b.path && a.version == b.version
            && a.query.elementsEqual(b.query, by: ==) && a.headers.elementsEqual(b.headers, by: ==)
    }

    public enum Outcome: Equatable {
        /// The head is not complete yet.
        case incomplete
        case request(HTTP1Request, headLength: Int)
        /// Not a request we can read: the status to answer with, and why.
        case invalid(status: Int, reason: String)
    }

    public func parameter(_ name: String) -> String? { query.first { $0.0 == name }?.1 }

    public static func parse(_ bytes: some Collection<UInt8>, limit: Int) -> Outcome {
        let data = Array(bytes.prefix(limit + 4))
        guard let end = headEnd(data) else {
            return data.count > limit ? .invalid(status: 431, reason: "request head larger than \(limit) bytes") : .incomplete
        }
        guard end <= limit else { return .invalid(status: 431, reason: "request head larger than \(limit) bytes") }
        var lines = data[..<end].split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            line.last == 0x0D ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { return .invalid(status: 400, reason: "empty request") }
        guard first.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return .invalid(status: 400, reason: "malformed request line") }
        let parts = first.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[1].first == UInt8(ascii: "/") else {
            return .invalid(status: 400, reason: "malformed request line")
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .invalid(status: 505, reason: "unsupported version") }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon != line.startIndex,
                  line.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
                return .invalid(status: 400, reason: "malformed header line")
            }
            let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingASCIISpaces()
            headers.append((name, value))
        }
        let path: String, query: [(String, String)]
        switch target(parts[1]) {
        case .success(let parsed): (path, query) = parsed
        case .failure(let problem): return .invalid(status: 400, reason: problem.reason)
        }
        return .request(HTTP1Request(method: String(decoding: parts[0], as: UTF8.self), path: path, query: query,
                                     version: version, headers: headers), headLength: end)
    }

    /// A request target's path and query parameters, percent-decoded (`+` as a space in the
    /// query). HTTP/2's `:path` is read the same way.
    public static func target(_ target: some Collection<UInt8>) -> Result<(path: String, query: [(String, String)]), TargetProblem> {
        let target = Array(target)[...]
        let question = target.firstIndex(of: UInt8(ascii: "?"))
        guard let path = percentDecoded(target[..<(question ?? target.endIndex)], plusIsSpace: false) else { return .failure(.path) }
        var query: [(String, String)] = []
        if let question {
            for pair in target[(question + 1)...].split(separator: UInt8(ascii: "&")) {
                let equals = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
                guard let name = percentDecoded(pair[..<equals], plusIsSpace: true),
                      let value = percentDecoded(equals < pair.endIndex ? pair[(equals + 1)...] : [][...], plusIsSpace: true) else {
                    return .failure(.query)
                }
                query.append((name, value))
            }
        }
        return .success((path, query))
    }

    public enum TargetProblem: Error {
        case path, query

        public var reason: String { self == .path ? "malformed path" : "malformed query" }
    }

    /// The index just past the blank line that ends the head (CRLF CRLF, or bare LFs).
    static func headEnd(_ data: [UInt8]) -> Int? {
        var index = 0
        while index < data.count {
            if data[index] == 0x0A {
                if index + 1 < data.count && data[index + 1] == 0x0A { return index + 2 }
                if index + 2 < data.count && data[index + 1] == 0x0D && data[index + 2] == 0x0A { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    static func percentDecoded(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool) -> String? {
        var out: [UInt8] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let b = bytes[index]
            if b == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, let high = ASCII.hexDigitValue(bytes[index + 1]), let low = ASCII.hexDigitValue(bytes[index + 2]) else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(plusIsSpace && b == UInt8(ascii: "+") ? 0x20 : b)
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}
