import Addressing
import CShim
import GateProtocol
import Glibc
import HPACK
import SystemCalls
import Transport
import Wire

/// A gRPC health server that runs in the test's own reactor, built from the project's sans-IO
/// server side (the HTTP/2 machine in the server role and `GRPCServerCall`): the agent's client
/// code talks to it over an abstract unix socket, and the test changes what it serves between
/// turns (a status, no Watch, a GOAWAY, a lost connection, silence).
final class InProcessHealthServer: EventSource {
    let name: String
    private let listener: Socket
    private final class Peer {
        let socket: Socket
        let http2 = HTTP2Connection(role: .server, limits: .server)
        var bodies: [UInt32: [UInt8]] = [:]
        var paths: [UInt32: String] = [:]
        var closed = false
        init(_ socket: Socket) { self.socket = socket }
    }
    private var peers: [Peer] = []
    private var watches: [(peer: Peer, stream: UInt32, service: String)] = []

    /// What each service is; a service not here is unknown (NOT_FOUND, as grpc-go answers).
    var statuses: [String: ServingStatus] = ["": .serving]
    /// Without Watch: UNIMPLEMENTED for it, as a server that registers only Check.
    var servesWatch = true
    /// Without the health service: UNIMPLEMENTED for each of its methods, as a server that
    /// registers none.
    var servesHealth = true
    /// Without List (gRFC A90): UNIMPLEMENTED for it, as servers before it.
    var servesList = true
    /// List fails with this status (RESOURCE_EXHAUSTED for too many services).
    var listFailure: GRPCStatus?
    private(set) var lists = 0
    /// Checks are taken and never answered.
    var silent = false
    /// Lists are taken and never answered.
    var silentLists = false
    private(set) var checks = 0
    private(set) var watchesStarted = 0

    init?() {
        name = "grpc-init-tests/\(getpid())/\(UInt64.random(in: 0 ... .max))"
        let fd = cshim_listen_abstract(name, 16)
        guard fd >= 0 else { return nil }
        listener = Socket.adopt(listening: fd)
    }

    var target: Target { .unixAbstract(name: name) }

    /// Tells every open Watch of `service` its new status.
    func set(_ service: String, _ status: ServingStatus) {
        statuses[service] = status
        for watch in watches where watch.service == service && !watch.peer.closed {
            watch.peer.http2.sendData(streamID: watch.stream, GRPCServerCall.message(Health.response(status)), endStream: false)
        }
    }

    /// `service` leaves the list: its Watches are told SERVICE_UNKNOWN, as grpc-go tells them.
    func remove(_ service: String) {
        statuses[service] = nil
        for watch in watches where watch.service == service && !watch.peer.closed {
            watch.peer.http2.sendData(streamID: watch.stream, GRPCServerCall.message(Health.response(.serviceUnknown)), endStream: false)
        }
    }

    /// GOAWAY on every connection: no new streams; the open ones go on.
    func goAway() { for peer in peers { peer.http2.close(code: .noError, debug: "max age") } }

    /// Every open Watch ended with `status` (a server that stops watching, OK or otherwise).
    func endWatches(_ status: GRPCStatus) {
        for watch in watches where !watch.peer.closed {
            watch.peer.http2.sendHeaders(streamID: watch.stream, GRPCServerCall.trailers(status), endStream: true)
        }
        watches = []
    }

    /// Every connection closed at once, as a server that crashed.
    func dropConnections() {
        for peer in peers where !peer.closed {
            peer.closed = true
            shutdown(peer.socket.fd, Int32(SHUT_RDWR))
        }
        watches = []
    }

    func descriptors(into set: inout [pollfd]) {
        set.append(pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0))
        for peer in peers where !peer.closed { set.append(pollfd(fd: peer.socket.fd, events: Int16(POLLIN), revents: 0)) }
    }

    var wakeAt: Int64? { nil }

    func turn(_ polled: ArraySlice<pollfd>, now: Int64) {
        let ready = Set(polled.filter { $0.revents != 0 }.map(\.fd))
        if ready.contains(listener.fd) {
            while case .connection(let socket) = listener.acceptNext() { peers.append(Peer(socket)) }
        }
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        for peer in peers where !peer.closed && ready.contains(peer.socket.fd) {
            switch buffer.withUnsafeMutableBytes({ peer.socket.read(into: $0) }) {
            case .bytes(let n):
                guard let events = try? peer.http2.receive(Array(buffer[0..<n])) else { break }
                for event in events { take(event, peer) }
            case .wouldBlock: break
            case .endOfStream, .failed: peer.closed = true
            }
        }
        flush()
    }

    /// Writes what each connection has to say (the test's changes between turns included).
    func flush() {
        for peer in peers where !peer.closed {
            let bytes = peer.http2.takeOutbound()
            guard !bytes.isEmpty else { continue }
            _ = bytes.withUnsafeBytes { peer.socket.write($0) }
        }
    }

    private func take(_ event: HTTP2Connection.Event, _ peer: Peer) {
        switch event {
        case .headers(let stream, let fields, let end):
            if peer.paths[stream] == nil { peer.paths[stream] = fields.first { $0.name == ":path" }?.value ?? "" }
            if end { call(peer, stream) }
        case .data(let stream, let bytes, let end):
            peer.bodies[stream, default: []] += bytes
            if end { call(peer, stream) }
        default:
            break
        }
    }

    private func call(_ peer: Peer, _ stream: UInt32) {
        let body = peer.bodies.removeValue(forKey: stream) ?? []
        guard case .success(let message) = GRPCServerCall.request(from: body), let service = try? Health.decodeRequest(message) else {
            return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.internalError, "bad request")), endStream: true)
        }
        guard servesHealth else {
            if peer.paths[stream] == Health.watchPath { watchesStarted += 1 } else { checks += 1 }
            return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.unimplemented, "unknown service grpc.health.v1.Health")),
                                          endStream: true)
        }
        if peer.paths[stream] == Health.listPath {
            lists += 1
            guard servesList else {
                return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.unimplemented, "unknown method List")), endStream: true)
            }
            if silentLists { return }
            if let listFailure { return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(listFailure), endStream: true) }
            peer.http2.sendHeaders(streamID: stream, GRPCServerCall.responseHeaders, endStream: false)
            let listed = statuses.keys.sorted().map { (service: $0, status: statuses[$0]!) }
            peer.http2.sendData(streamID: stream, GRPCServerCall.message(Health.listResponse(listed)), endStream: false)
            return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailers(GRPCStatus(.ok)), endStream: true)
        }
        if peer.paths[stream] == Health.watchPath {
            watchesStarted += 1
            guard servesWatch else {
                return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.unimplemented, "unknown method Watch")), endStream: true)
            }
            peer.http2.sendHeaders(streamID: stream, GRPCServerCall.responseHeaders, endStream: false)
            guard let status = statuses[service] else {
                return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailers(GRPCStatus(.notFound, "unknown service")), endStream: true)
            }
            peer.http2.sendData(streamID: stream, GRPCServerCall.message(Health.response(status)), endStream: false)
            watches.append((peer, stream, service))
            return
        }
        checks += 1
        if silent { return }
        guard let status = statuses[service] else {
            return peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailersOnly(GRPCStatus(.notFound, "unknown service")), endStream: true)
        }
        peer.http2.sendHeaders(streamID: stream, GRPCServerCall.responseHeaders, endStream: false)
        peer.http2.sendData(streamID: stream, GRPCServerCall.message(Health.response(status)), endStream: false)
        peer.http2.sendHeaders(streamID: stream, GRPCServerCall.trailers(GRPCStatus(.ok)), endStream: true)
    }
}
