// libFuzzer entry point for scripts/fuzz.sh: whole HTTP/2 conversations between a client and a
// server connection machine with an adversary between them (Conversation.swift); a broken
// invariant is reported as a crash. Not a SwiftPM target.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if let violation = Conversation.run(Array(UnsafeBufferPointer(start: data, count: size))) { fatalError(violation) }
    return 0
}
