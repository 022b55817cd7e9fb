// Command goserver is a grpc-go health server used as a real peer by the integration tests.
// It prints "READY <address>" on stdout once it listens, one "HEADER name=value" line per
// request header it receives when -echo-headers is set, and "SIGNAL <name>" for SIGUSR1, SIGUSR2
// and SIGHUP when -report-signals is set. With -control it reads "SET <service|-> <STATUS>" lines
// on stdin and prints "SET <service|-> <STATUS> <unix nanoseconds>" as each takes effect; Watch
// streams every change (or is UNIMPLEMENTED with -no-watch). With -serve-on-sigusr2 each SIGUSR2
// sets the next status that is not SERVING to SERVING and prints the same SET line. -list answers
// Health/List (gRFC A90), which grpc-go 1.33 does not have, with every status, by hand. -spawn
// starts a second copy of this server as its child, so that one command is a tree of two servers.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"io/ioutil"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	_ "google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type healthServer struct {
	healthpb.UnimplementedHealthServer
	mu          sync.Mutex
	statuses    map[string]healthpb.HealthCheckResponse_ServingStatus
	delay       time.Duration
	echoHeaders bool
	noWatch     bool
	watchers    map[chan struct{}]struct{}
}

func (h *healthServer) set(service string, st healthpb.HealthCheckResponse_ServingStatus) {
	h.mu.Lock()
	h.statuses[service] = st
	for ch := range h.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

func (h *healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.echoHeaders {
		md, _ := metadata.FromIncomingContext(ctx)
		for k, vs := range md {
			for _, v := range vs {
				fmt.Printf("HEADER %s=%s\n", k, v)
			}
		}
		fmt.Printf("SERVICE %q\n", req.Service)
	}
	if h.delay > 0 {
		select {
		case <-time.After(h.delay):
		case <-ctx.Done():
			// As grpc-go's own handlers end: the deadline's status, not Unknown.
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	h.mu.Lock()
	st, ok := h.statuses[req.Service]
	h.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if h.noWatch {
		return status.Error(codes.Unimplemented, "unknown method Watch for service grpc.health.v1.Health")
	}
	changed := make(chan struct{}, 1)
	h.mu.Lock()
	h.watchers[changed] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watchers, changed)
		h.mu.Unlock()
	}()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		h.mu.Lock()
		st, ok := h.statuses[req.Service]
		h.mu.Unlock()
		if !ok {
			st = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// serveNext sets the first status that is not SERVING (the empty name first, then the services
// in name order) to SERVING, and says so as -control does.
func (h *healthServer) serveNext() {
	h.mu.Lock()
	next, found := "", false
	for _, name := range h.names() {
		if h.statuses[name] != healthpb.HealthCheckResponse_SERVING {
			next, found = name, true
			break
		}
	}
	h.mu.Unlock()
	if !found {
		return
	}
	at := time.Now().UnixNano()
	h.set(next, healthpb.HealthCheckResponse_SERVING)
	if next == "" {
		next = "-"
	}
	fmt.Printf("SET %s SERVING %d\n", next, at)
	os.Stdout.Sync()
}

// names are the services in name order, the empty name first; h.mu is held.
func (h *healthServer) names() []string {
	names := make([]string, 0, len(h.statuses))
	for name := range h.statuses {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// rawBytes is a message the codec passes as it is: Health/List's, written by hand.
type rawBytes []byte

type rawCodec struct{ proto encoding.Codec }

func (c rawCodec) Marshal(v interface{}) ([]byte, error) {
	if raw, ok := v.(*rawBytes); ok {
		return *raw, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data []byte, v interface{}) error {
	if raw, ok := v.(*rawBytes); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (c rawCodec) String() string { return "proto" }

// field is a length-delimited protobuf field.
func field(number int, payload []byte) []byte {
	var n [binary.MaxVarintLen64]byte
	out := append([]byte{}, n[:binary.PutUvarint(n[:], uint64(number<<3|2))]...)
	out = append(out, n[:binary.PutUvarint(n[:], uint64(len(payload)))]...)
	return append(out, payload...)
}

// list answers Health/List, a method the Health service registered here does not have (grpc-go
// sends a known service's unknown methods to the unknown-service handler): a HealthListResponse,
// map<string, HealthCheckResponse> statuses = 1, every status in name order.
func (h *healthServer) list(_ interface{}, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	if method != "/grpc.health.v1.Health/List" {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	var request rawBytes
	if err := stream.RecvMsg(&request); err != nil {
		return err
	}
	var out rawBytes
	h.mu.Lock()
	for _, name := range h.names() {
		var response []byte
		if st := h.statuses[name]; st != 0 {
			response = []byte{0x08, byte(st)}
		}
		out = append(out, field(1, append(field(1, []byte(name)), field(2, response)...))...)
	}
	h.mu.Unlock()
	return stream.SendMsg(&out)
}

func main() {
	network := flag.String("network", "tcp", "tcp, tcp4, tcp6 or unix")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	serving := flag.String("status", "SERVING", "status of the empty service name")
	services := flag.String("services", "", "comma-separated name=STATUS pairs")
	delay := flag.Duration("delay", 0, "delay before answering Check")
	noHealth := flag.Bool("no-health", false, "do not register the health service")
	echo := flag.Bool("echo-headers", false, "print received headers")
	tlsCert := flag.String("tls-cert", "", "serve TLS with this certificate chain (PEM)")
	tlsKey := flag.String("tls-key", "", "private key of -tls-cert")
	clientCA := flag.String("tls-client-ca", "", "require client certificates signed by this CA")
	maxVersion := flag.String("tls-max-version", "1.3", "highest TLS version: 1.2 or 1.3")
	ciphers := flag.String("tls-ciphers", "", "comma-separated TLS 1.2 cipher suites (Go names); empty: Go's defaults")
	servingAfter := flag.Duration("serving-after", 0, "answer NOT_SERVING for the empty service name this long, then -status")
	ignoreTerm := flag.Bool("ignore-sigterm", false, "ignore SIGTERM (a server that does not stop when asked)")
	reportSignals := flag.Bool("report-signals", false, "print SIGNAL <name> for SIGUSR1, SIGUSR2 and SIGHUP")
	maxAge := flag.Duration("max-connection-age", 0, "send GOAWAY to each connection this long after it opened (grpc-go adds 10% jitter)")
	printClient := flag.Bool("print-client-cert", false, "print CLIENT <common name> for each TLS client certificate")
	noWatch := flag.Bool("no-watch", false, "answer Health/Watch with UNIMPLEMENTED (a server that only has Check)")
	control := flag.Bool("control", false, "read SET <service|-> <STATUS> lines on stdin")
	maxStreams := flag.Uint("max-concurrent-streams", 0, "SETTINGS_MAX_CONCURRENT_STREAMS (0: grpc-go's default, unlimited)")
	serveOnSignal := flag.Bool("serve-on-sigusr2", false, "on each SIGUSR2 set the next status that is not SERVING to SERVING")
	list := flag.Bool("list", false, "answer Health/List with every status")
	spawn := flag.String("spawn", "", "start this server again as a child with these space-separated arguments")
	flag.Parse()
	if *spawn != "" {
		self, err := os.Executable()
		if err == nil {
			second := exec.Command(self, strings.Fields(*spawn)...)
			second.Stdout, second.Stderr = os.Stdout, os.Stderr
			err = second.Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if *reportSignals {
		signals := make(chan os.Signal, 16)
		signal.Notify(signals, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)
		go func() {
			for s := range signals {
				fmt.Printf("SIGNAL %v\n", s)
				os.Stdout.Sync()
			}
		}()
	}

	lis, err := net.Listen(*network, *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var opts []grpc.ServerOption
	if *tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
		if *maxVersion == "1.2" {
			cfg.MaxVersion = tls.VersionTLS12
		}
		if *ciphers != "" {
			known := map[string]uint16{}
			for _, suite := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
				known[suite.Name] = suite.ID
			}
			for _, name := range strings.Split(*ciphers, ",") {
				id, ok := known[name]
				if !ok {
					fmt.Fprintln(os.Stderr, "unknown cipher suite", name)
					os.Exit(1)
				}
				cfg.CipherSuites = append(cfg.CipherSuites, id)
			}
		}
		if *clientCA != "" {
			pem, err := ioutil.ReadFile(*clientCA)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		if *printClient {
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) > 0 {
					fmt.Printf("CLIENT %s\n", cs.PeerCertificates[0].Subject.CommonName)
					os.Stdout.Sync()
				}
				return nil
			}
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	if *maxAge > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: *maxAge, MaxConnectionAgeGrace: 10 * time.Second}))
	}
	if *maxStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(*maxStreams)))
	}
	h := &healthServer{statuses: map[string]healthpb.HealthCheckResponse_ServingStatus{}, delay: *delay, echoHeaders: *echo,
		noWatch: *noWatch, watchers: map[chan struct{}]struct{}{}}
	if *list && !*noHealth {
		opts = append(opts, grpc.CustomCodec(rawCodec{encoding.GetCodec("proto")}), grpc.UnknownServiceHandler(h.list))
	}
	srv := grpc.NewServer(opts...)
	if !*noHealth {
		h.statuses[""] = healthpb.HealthCheckResponse_ServingStatus(healthpb.HealthCheckResponse_ServingStatus_value[*serving])
		for _, pair := range strings.Split(*services, ",") {
			if kv := strings.SplitN(pair, "=", 2); len(kv) == 2 {
				h.statuses[kv[0]] = healthpb.HealthCheckResponse_ServingStatus(healthpb.HealthCheckResponse_ServingStatus_value[kv[1]])
			}
		}
		healthpb.RegisterHealthServer(srv, h)
		if *control {
			go func() {
				lines := bufio.NewScanner(os.Stdin)
				for lines.Scan() {
					f := strings.Fields(lines.Text())
					if len(f) != 3 || f[0] != "SET" {
						continue
					}
					service := f[1]
					if service == "-" {
						service = ""
					}
					at := time.Now().UnixNano()
					h.set(service, healthpb.HealthCheckResponse_ServingStatus(healthpb.HealthCheckResponse_ServingStatus_value[f[2]]))
					fmt.Printf("SET %s %s %d\n", f[1], f[2], at)
					os.Stdout.Sync()
				}
			}()
		}
		if *serveOnSignal {
			signals := make(chan os.Signal, 16)
			signal.Notify(signals, syscall.SIGUSR2)
			go func() {
				for range signals {
					h.serveNext()
				}
			}()
		}
		if *servingAfter > 0 {
			final := h.statuses[""]
			h.statuses[""] = healthpb.HealthCheckResponse_NOT_SERVING
			time.AfterFunc(*servingAfter, func() {
				h.set("", final)
				fmt.Printf("SERVING NOW %d\n", time.Now().UnixNano())
				os.Stdout.Sync()
			})
		}
	}
	fmt.Printf("READY %s\n", lis.Addr().String())
	os.Stdout.Sync()
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
