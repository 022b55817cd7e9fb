// A grpc-java (Netty transport) health server used as a real peer by the integration tests.
// It prints "READY <address>" on stdout once it listens. With -control it reads
// "SET <service|-> <STATUS>" lines on stdin and prints "SET <service|-> <STATUS> <unix nanoseconds>"
// as each takes effect; Watch streams every change. It prints one "FRAME <INBOUND|OUTBOUND> <TYPE>
// peer=<client's port> <fields>" line for each PING, GOAWAY and RST_STREAM frame it reads or
// writes (from Netty's HTTP/2 frame logger), so a test sees what keepalive enforcement does.
// -permit-keepalive-time and -permit-keepalive-without-calls set that enforcement. On SIGTERM it
// stops as grpc-java servers do: every status NOT_SERVING, Server.shutdown() (GOAWAY, no new
// calls), at most -grace for the calls in flight, then it prints "STOPPED <graceful|forced>" and
// exits with status 143 (the JVM's own for SIGTERM). -exit-when-ready exits once it listens
// (the build dumps the JVM's class-data archive from that run).
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class HealthServer {
    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static long unixNanos() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }

    /** Go-style durations as the other peers take them: "300ms", "1s", "2m", "1h". */
    static long nanos(String text) {
        Matcher m = Pattern.compile("(\\d+)(ns|us|ms|s|m|h)").matcher(text);
        if (!m.matches()) throw new IllegalArgumentException("bad duration " + text);
        long n = Long.parseLong(m.group(1));
        switch (m.group(2)) {
            case "ns": return n;
            case "us": return TimeUnit.MICROSECONDS.toNanos(n);
            case "ms": return TimeUnit.MILLISECONDS.toNanos(n);
            case "s": return TimeUnit.SECONDS.toNanos(n);
            case "m": return TimeUnit.MINUTES.toNanos(n);
            default: return TimeUnit.HOURS.toNanos(n);
        }
    }

    static final class Health extends HealthGrpc.HealthImplBase {
        private final Map<String, ServingStatus> statuses = new HashMap<>();
        private final Map<String, List<StreamObserver<HealthCheckResponse>>> watchers = new HashMap<>();

        synchronized void set(String service, ServingStatus status) {
            statuses.put(service, status);
            for (StreamObserver<HealthCheckResponse> w : new ArrayList<>(watchers.getOrDefault(service, List.of()))) {
                w.onNext(HealthCheckResponse.newBuilder().setStatus(status).build());
            }
        }

        synchronized void setAll(ServingStatus status) {
            for (String service : new ArrayList<>(statuses.keySet())) set(service, status);
        }

        @Override
        public synchronized void check(HealthCheckRequest request, StreamObserver<HealthCheckResponse> response) {
            ServingStatus status = statuses.get(request.getService());
            if (status == null) {
                // grpc-java's own HealthStatusManager answers an unknown service so.
                response.onError(Status.NOT_FOUND.withDescription("unknown service " + request.getService()).asRuntimeException());
                return;
            }
            response.onNext(HealthCheckResponse.newBuilder().setStatus(status).build());
            response.onCompleted();
        }

        @Override
        public synchronized void watch(HealthCheckRequest request, StreamObserver<HealthCheckResponse> response) {
            String service = request.getService();
            ServerCallStreamObserver<HealthCheckResponse> call = (ServerCallStreamObserver<HealthCheckResponse>) response;
            call.setOnCancelHandler(() -> {
                synchronized (Health.this) {
                    List<StreamObserver<HealthCheckResponse>> list = watchers.get(service);
                    if (list != null) list.remove(response);
                }
            });
            watchers.computeIfAbsent(service, k -> new ArrayList<>()).add(response);
            ServingStatus status = statuses.getOrDefault(service, ServingStatus.SERVICE_UNKNOWN);
            response.onNext(HealthCheckResponse.newBuilder().setStatus(status).build());
        }
    }

    /** Netty's HTTP/2 frame logger (grpc-netty logs through it at FINE) turned into FRAME lines. */
    static final class Frames extends Handler {
        private static final Pattern FRAME = Pattern.compile("(INBOUND|OUTBOUND) (PING|GO_AWAY|RST_STREAM): (.*)");
        private static final Pattern PEER = Pattern.compile("R:[^\\]]*:(\\d+)\\]");
        private static final Pattern DEBUG = Pattern.compile("bytes=([0-9a-f]*)$");

        @Override
        public void publish(LogRecord record) {
            String message = record.getMessage();
            if (message == null) return;
            Matcher m = FRAME.matcher(message);
            if (!m.find()) return;
            Matcher peer = PEER.matcher(message);
            String fields = m.group(3);
            Matcher hex = DEBUG.matcher(fields);
            if (m.group(2).equals("GO_AWAY") && hex.find()) {
                // The debug data as text: "too_many_pings" is what keepalive enforcement says.
                String h = hex.group(1);
                byte[] data = new byte[h.length() / 2];
                for (int i = 0; i < data.length; i++) data[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
                fields = fields.substring(0, hex.start()) + "debug=" + new String(data, StandardCharsets.UTF_8);
            }
            say("FRAME " + m.group(1) + " " + m.group(2) + " peer=" + (peer.find() ? peer.group(1) : "?") + " " + fields);
        }

        @Override
        public void flush() {}

        @Override
        public void close() {}
    }

    public static void main(String[] args) throws Exception {
        String addr = "127.0.0.1:0";
        String tlsCert = null, tlsKey = null, clientCA = null;
        String status = "SERVING", services = "";
        boolean control = false, permitWithoutCalls = false, exitWhenReady = false;
        long permitTime = -1, grace = TimeUnit.SECONDS.toNanos(5);
        for (int i = 0; i < args.length; i++) {
            String flag = args[i];
            switch (flag) {
                case "-addr": addr = args[++i]; break;
                case "-tls-cert": tlsCert = args[++i]; break;
                case "-tls-key": tlsKey = args[++i]; break;
                case "-tls-client-ca": clientCA = args[++i]; break;
                case "-status": status = args[++i]; break;
                case "-services": services = args[++i]; break;
                case "-control": control = true; break;
                case "-permit-keepalive-time": permitTime = nanos(args[++i]); break;
                case "-permit-keepalive-without-calls": permitWithoutCalls = true; break;
                case "-grace": grace = nanos(args[++i]); break;
                case "-exit-when-ready": exitWhenReady = true; break;
                default:
                    System.err.println("unknown flag " + flag);
                    System.exit(2);
            }
        }

        Logger frames = Logger.getLogger("io.grpc.netty.NettyServerHandler");
        frames.setLevel(Level.FINE);
        frames.setUseParentHandlers(false);
        frames.addHandler(new Frames());

        int colon = addr.lastIndexOf(':');
        String host = addr.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(addr.substring(colon + 1));
        InetSocketAddress listen = host.isEmpty() ? new InetSocketAddress(port) : new InetSocketAddress(host, port);
        NettyServerBuilder builder = NettyServerBuilder.forAddress(listen);
        if (tlsCert != null) {
            SslContextBuilder ssl = GrpcSslContexts.forServer(new File(tlsCert), new File(tlsKey));
            if (clientCA != null) ssl.trustManager(new File(clientCA)).clientAuth(ClientAuth.REQUIRE);
            builder.sslContext(ssl.build());
        }
        if (permitTime >= 0) builder.permitKeepAliveTime(permitTime, TimeUnit.NANOSECONDS);
        builder.permitKeepAliveWithoutCalls(permitWithoutCalls);

        Health health = new Health();
        health.set("", ServingStatus.valueOf(status));
        for (String pair : services.split(",")) {
            String[] kv = pair.split("=", 2);
            if (kv.length == 2) health.set(kv[0], ServingStatus.valueOf(kv[1]));
        }
        Server server = builder.addService(health).build();

        // SIGTERM is handled before the JVM's shutdown starts (a shutdown hook would run while
        // java.util.logging is being reset, and the frames of the stop would go unseen), and
        // from before the server listens.
        long graceNanos = grace;
        CountDownLatch stopped = new CountDownLatch(1);
        sun.misc.Signal.handle(new sun.misc.Signal("TERM"), signal -> {
            health.setAll(ServingStatus.NOT_SERVING);
            server.shutdown();
            boolean graceful = false;
            try {
                graceful = server.awaitTermination(graceNanos, TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (!graceful) server.shutdownNow();
            say("STOPPED " + (graceful ? "graceful" : "forced"));
            stopped.countDown();
        });
        server.start();

        InetSocketAddress bound = (InetSocketAddress) server.getListenSockets().get(0);
        String shown = bound.getAddress().getHostAddress();
        if (shown.contains(":")) shown = "[" + shown + "]";
        say("READY " + shown + ":" + bound.getPort());
        if (exitWhenReady) System.exit(0);

        if (control) {
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                String[] f = line.trim().split("\\s+");
                if (f.length != 3 || !f[0].equals("SET")) continue;
                long at = unixNanos();
                health.set(f[1].equals("-") ? "" : f[1], ServingStatus.valueOf(f[2]));
                say("SET " + f[1] + " " + f[2] + " " + at);
            }
        }
        // The server terminates only when stopped: the exit is the SIGTERM handler's end.
        server.awaitTermination();
        stopped.await();
        System.exit(143);
    }
}
