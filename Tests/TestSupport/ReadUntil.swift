import Glibc

/// What `fd` gives until `marker` and the end of its line came, or `seconds` passed (a peer that
/// never starts fails the test instead of hanging it).
public func readUntil(_ fd: Int32, _ marker: String, within seconds: Double) -> String {
    func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    let deadline = now() + seconds
    var text = ""
    while !(text.contains(marker) && text.hasSuffix("\n")) {
        let remaining = deadline - now()
        guard remaining > 0 else { break }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(remaining * 1000) + 1) > 0 else { continue }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { break }
        text += String(decoding: chunk.prefix(n), as: UTF8.self)
    }
    return text
}
