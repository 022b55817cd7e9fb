/// Bytes appended at the end and consumed from the front, without moving the rest on each
/// consumption: a read index, and a compaction once most of the storage is consumed.
public struct ByteBuffer {
    public private(set) var storage: [UInt8] = []
    /// Where the unconsumed bytes start in `storage`.
    public private(set) var readIndex = 0

    public init() {}

    public var count: Int { storage.count - readIndex }
    public var isEmpty: Bool { count == 0 }

    public mutating func append<S: Sequence>(contentsOf bytes: S) where S.Element == UInt8 {
        storage.append(contentsOf: bytes)
    }

    /// Drops the first `n` unconsumed bytes.
    public mutating func consume(_ n: Int) {
        readIndex += min(n, count)
        if readIndex == storage.count {
            storage.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex >= 4096 && readIndex * 2 >= storage.count {
            storage.removeFirst(readIndex)
            readIndex = 0
        }
    }

    public mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        readIndex = 0
    }

    /// The unconsumed bytes, for a call that takes a pointer and a length.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { raw in body(UnsafeRawBufferPointer(rebasing: raw[readIndex...])) }
    }
}
