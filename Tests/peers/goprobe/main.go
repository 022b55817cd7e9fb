// Command goprobe is the reference tool's flow (dial with block, one Health/Check) on Debian's
// grpc-go: the comparison point for scripts/bench-probe.py.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "", "host:port")
	flag.Parse()
	log.SetFlags(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *addr, grpc.WithInsecure(), grpc.WithBlock(), grpc.WithUserAgent("grpc_health_probe"))
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
