// libFuzzer entry point for scripts/fuzz.sh: a peer's bytes into the gate protocol's decoders,
// both directions (what the agent reads from the supervisor, what the supervisor reads from the
// agent). Whatever decodes must encode back to a frame that decodes to the same message; a
// mismatch is reported as a crash. Not a SwiftPM target.
import GateProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var fromSupervisor = GateFraming.Decoder()
    var fromAgent = GateFraming.Decoder()
    // Split where the first byte says, so that frames arrive in pieces as over a pipe.
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    for part in [bytes[..<cut], bytes[cut...]] {
        fromSupervisor.append(part)
        fromAgent.append(part)
        while let frame = try? fromSupervisor.nextFrame() {
            guard let message = try? SupervisorMessage.decode(kind: frame.kind, payload: frame.payload) else { continue }
            var again = GateFraming.Decoder()
            again.append(message.frame)
            guard let copy = try? again.nextFrame(), (try? SupervisorMessage.decode(kind: copy.kind, payload: copy.payload)) == message else {
                fatalError("a supervisor message does not survive its own encoding: \(message)")
            }
        }
        while let frame = try? fromAgent.nextFrame() {
            guard let message = try? AgentMessage.decode(kind: frame.kind, payload: frame.payload) else { continue }
            var again = GateFraming.Decoder()
            again.append(message.frame)
            guard let copy = try? again.nextFrame(), (try? AgentMessage.decode(kind: copy.kind, payload: copy.payload)) == message else {
                fatalError("an agent message does not survive its own encoding: \(message)")
            }
        }
    }
    return 0
}
