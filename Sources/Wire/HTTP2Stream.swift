import HPACK

/// A stream's state (RFC 9113 §5.1) with the flow-control windows that state still uses: what we
/// may send while our side is open, and what the peer sent that we have not yet acknowledged
/// while its side is open. Idle and closed streams are not kept: an ID tells which they are.
/// A send window may be negative: SETTINGS_INITIAL_WINDOW_SIZE can shrink it below what is
/// already sent (§6.9.2), and nothing is sent until WINDOW_UPDATEs bring it above zero.
enum HTTP2StreamState {
    case open(sendWindow: Int, receiveUnacknowledged: Int)
    /// We sent END_STREAM; the peer's side is open.
    case halfClosedLocal(receiveUnacknowledged: Int)
    /// The peer sent END_STREAM; ours is open.
    case halfClosedRemote(sendWindow: Int)

    var sendWindow: Int? {
        switch self {
        case .open(let window, _), .halfClosedRemote(let window): return window
        case .halfClosedLocal: return nil
        }
    }

    var remoteOpen: Bool {
        if case .halfClosedRemote = self { return false }
        return true
    }

    var receiveUnacknowledged: Int {
        switch self {
        case .open(_, let n), .halfClosedLocal(let n): return n
        case .halfClosedRemote: return 0
        }
    }

    func withSendWindow(_ window: Int) -> HTTP2StreamState {
        switch self {
        case .open(_, let n): return .open(sendWindow: window, receiveUnacknowledged: n)
        case .halfClosedRemote: return .halfClosedRemote(sendWindow: window)
        case .halfClosedLocal: return self
        }
    }

    func withReceiveUnacknowledged(_ n: Int) -> HTTP2StreamState {
        switch self {
        case .open(let window, _): return .open(sendWindow: window, receiveUnacknowledged: n)
        case .halfClosedLocal: return .halfClosedLocal(receiveUnacknowledged: n)
        case .halfClosedRemote: return self
        }
    }

    /// Our side ended (END_STREAM sent): nil when the stream is now closed.
    var closingLocal: HTTP2StreamState? {
        switch self {
        case .open(_, let n): return .halfClosedLocal(receiveUnacknowledged: n)
        case .halfClosedRemote, .halfClosedLocal: return nil
        }
    }

    /// The peer's side ended (END_STREAM received): nil when the stream is now closed.
    var closingRemote: HTTP2StreamState? {
        switch self {
        case .open(let window, _): return .halfClosedRemote(sendWindow: window)
        case .halfClosedLocal, .halfClosedRemote: return nil
        }
    }
}

/// One stream that is open or half closed: its state, what waits to be sent on it in order
/// (DATA waits for window; headers after it wait their turn), and what the peer has sent so far.
struct HTTP2Stream {
    enum Segment {
        case headers([HeaderField], endStream: Bool)
        case data([UInt8], endStream: Bool)
    }

    var state: HTTP2StreamState
    var queue: [Segment] = []
    /// Header blocks the peer sent on it: the first is the head, a later one trailers.
    var peerHeaderBlocks = 0
    /// The peer's content-length, when it gave one, and the DATA bytes it has sent.
    var declaredLength: Int? = nil
    var receivedLength = 0

    init(state: HTTP2StreamState) { self.state = state }
}
