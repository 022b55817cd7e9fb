// Command goprobe is the reference tool's flow (dial with block, one Health/Check) on Debian's
// grpc-go: the comparison point for scripts/bench-probe.py.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "", "host:port")
	useTLS := flag.Bool("tls", false, "use TLS, trusting the system roots")
	caCert := flag.String("tls-ca-cert", "", "use TLS, trusting these roots")
	flag.Parse()
	log.SetFlags(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	security := grpc.WithInsecure()
	if *caCert != "" {
		creds, err := credentials.NewClientTLSFromFile(*caCert, "")
		if err != nil {
			log.Printf("error: %v", err)
			os.Exit(1)
		}
		security = grpc.WithTransportCredentials(creds)
	} else if *useTLS {
		security = grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))
	}
	conn, err := grpc.DialContext(ctx, *addr, security, grpc.WithBlock(), grpc.WithUserAgent("grpc_health_probe"))
	if err != nil {
		log.Printf("error: %v", err)
		os.Exit(2)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Printf("error: %v", err)
		os.Exit(3)
	}
	log.Printf("status: %v", resp.GetStatus().String())
}
