// Command ec2fake serves internal/cloud/ec2fake on a local address, for
// trying `terrane server --vpc-config` without AWS (docs/vpc.md). It
// prints every change it applies, one line each.
//
//	go run ./internal/cloud/ec2fake/cmd/ec2fake -listen 127.0.0.1:4599 -tables rtb-0a1,rtb-0b2
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4599", "address to serve the EC2 API on")
	tables := flag.String("tables", "rtb-0a1", "route tables to create, comma-separated")
	limit := flag.Int("limit", ec2fake.DefaultRouteLimit, "routes per table")
	vpcCIDR := flag.String("vpc-cidr", "172.31.0.0/16", "the VPC's CIDR (each table's local route)")
	flag.Parse()
	cidr, err := netip.ParsePrefix(*vpcCIDR)
	if err != nil {
		fmt.Fprintln(os.Stderr, "-vpc-cidr:", err)
		os.Exit(2)
	}
	f := ec2fake.New(ec2fake.Options{RouteLimit: *limit, OnChange: func(c ec2fake.Change) {
		switch c.Kind {
		case ec2fake.AttributeChange:
			fmt.Printf("%s %s SourceDestCheck=%v\n", c.Kind, c.Instance, c.SourceDestCheck)
		case ec2fake.RouteDeleted:
			fmt.Printf("%s %s %s (%d routes)\n", c.Kind, c.Table, c.Old.Dst, c.Routes)
		default:
			fmt.Printf("%s %s %s -> %s (%d routes)\n", c.Kind, c.Table, c.New.Dst, c.New.Instance, c.Routes)
		}
	}})
	for _, t := range strings.Split(*tables, ",") {
		f.AddRouteTable(strings.TrimSpace(t), cidr)
	}
	srv, err := ec2fake.Start(f, *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("fake EC2 at %s, tables %s, limit %d\n", srv.URL, *tables, *limit)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
}
