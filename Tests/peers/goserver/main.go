// Command goserver is a grpc-go health server used as a real peer by the integration tests.
// It prints "READY <address>" on stdout once it listens, one "HEADER name=value" line per
// request header it receives when -echo-headers is set, and "SIGNAL <name>" for SIGUSR1, SIGUSR2
// and SIGHUP when -report-signals is set. With -control it reads "SET <service|-> <STATUS>" lines
// on stdin and prints "SET <service|-> <STATUS> <unix nanoseconds>" as each takes effect; Watch
// streams every change (or is UNIMPLEMENTED with -no-watch).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"io/ioutil"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
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
	flag.Parse()
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
	srv := grpc.NewServer(opts...)
	if !*noHealth {
		h := &healthServer{statuses: map[string]healthpb.HealthCheckResponse_ServingStatus{}, delay: *delay, echoHeaders: *echo,
			noWatch: *noWatch, watchers: map[chan struct{}]struct{}{}}
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
