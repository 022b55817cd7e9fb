import GateProtocol
import HealthServer
import HPACK
import Wire

/// `GET /metrics` on the health endpoint, over HTTP/1.1 and HTTP/2: rendered from memory (the
/// health model, the counters, the supervisor's facts), with no call to the server.
extension HealthEndpoint {
    /// The build's labels, read once.
    private static let build = BuildLabels.fromBuildInfo()

    func metricsText(accept: String?) -> (contentType: String, body: [UInt8]) {
        let format = MetricsFormat.negotiate(accept: accept)
        let snapshot = MetricsSnapshot(health: snapshot, counters: model.counters, facts: facts(), agentStarted: started,
                                       build: HealthEndpoint.build)
        return (format.contentType, Metrics.render(snapshot, format))
    }

    func metrics(_ peer: Peer, method: String, accept: String?) {
        guard method == "GET" || method == "HEAD" else {
            return respond(peer, status: 405, body: ["method not allowed"], head: false, extra: "Allow: GET, HEAD\r\n")
        }
        let (contentType, body) = metricsText(accept: accept)
        var response = "HTTP/1.1 200 OK\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        response += "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        peer.outbound.append(contentsOf: response.utf8)
        if method == "GET" { peer.outbound.append(contentsOf: body) }
        peer.closeWhenFlushed = true
        peer.pending = []
    }

    func metrics(_ connection: HTTP2Connection, _ stream: UInt32, method: String, accept: String?) {
        guard method == "GET" || method == "HEAD" else {
            return respond(connection, stream, status: 405, body: ["method not allowed"], head: false)
        }
        let (contentType, body) = metricsText(accept: accept)
        let head = method == "HEAD"
        connection.sendHeaders(streamID: stream, [HeaderField(":status", "200"), HeaderField("content-type", contentType),
                                                  HeaderField("content-length", String(body.count)), HeaderField("cache-control", "no-store")],
                               endStream: head)
        if !head { connection.sendData(streamID: stream, body, endStream: true) }
    }

    /// A probe answered, by where it came in and its verdict: ready when SERVING, live when the
    /// server's health service answered at all.
    func count(_ kind: Kind, _ verdict: Verdict) {
        switch kind {
        case .readyz: model.counters.probe(.readyz, success: verdict.isServing)
        case .livez: model.counters.probe(.livez, success: verdict.serverAnswered)
        case .check, .watch, .list: model.counters.probe(.grpc, success: verdict.isServing)
        }
    }
}
