package main

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/ipam"
)

// TestCtlCheckFindsExplainsRepairs: an address held by a VM port and by a
// pod its node reports is found (exit 1, both holders, since when) and
// explained; a VM port whose device its live agent has not seen is a leak
// that --repair lists without releasing and --repair --apply releases.
func TestCtlCheckFindsExplainsRepairs(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	l := srv.PKI
	a := []string{"--server", srv.URL, "--ca", l.CA.Cert, "--cert", l.Admin.Cert, "--key", l.Admin.Key}
	cmd := func(args ...string) []string { return append(append([]string{}, a...), args...) }
	mustCtl(t, cmd("topology", "apply", writeTopology(t, clienttest.Topology))...)
	mustCtl(t, cmd("hosts", "register", "n1", "--ip", "192.0.2.1", "--label", "rack=1")...)
	mustCtl(t, cmd("endpoints", "allocate", "--id", "port-1", "--host", "n1", "--network", "vms", "--namespace", "openstack")...)
	node, err := client.New(client.Config{Server: srv.URL, CAFile: l.CA.Cert, Token: clienttest.NodeToken})
	if err != nil {
		t.Fatal(err)
	}
	defer node.CloseIdleConnections()
	ctx := context.Background()
	eps, err := node.Endpoints(ctx)
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints: %v %v", eps, err)
	}
	vm := eps[0]
	dev := api.VMPortDevice("port-1")
	since := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	report := func(wired bool, pods ...ipam.ReportedAddress) {
		t.Helper()
		if _, err := node.ReportAddresses(ctx, "n1", api.AddressReport{Full: true, Added: pods,
			Ports: []ipam.ReportedPort{{ID: "port-1", Device: dev, Wired: wired, Since: since}}}); err != nil {
			t.Fatal(err)
		}
	}
	report(true)
	if out := mustCtl(t, cmd("check")...); !strings.HasPrefix(out, "clean") {
		t.Fatalf("check of a healthy state:\n%s", out)
	}

	// The node's agent claims the VM port's address for a pod.
	report(true, ipam.ReportedAddress{Network: "vms", Addr: vm.Addr, Block: vm.Block, Attachment: "c1/eth0", Pod: "default/web", Since: since})
	out, _, err := ctl(t, cmd("check")...)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("check with an address held twice: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"address-twice vms " + vm.Addr.String(), "VM port port-1 on n1 via API", "pod default/web (attachment c1/eth0) on n1 via CNI", "since " + since.Format(time.RFC3339), "address-outside-blocks"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	out = mustCtl(t, cmd("endpoints", "explain", vm.Addr.String())...)
	if !strings.Contains(out, "held by VM port port-1") || !strings.Contains(out, "held by pod default/web") || !strings.Contains(out, "issued by the server") {
		t.Errorf("explain:\n%s", out)
	}
	out = mustCtl(t, cmd("endpoints", "explain", netip.MustParseAddr("10.1.200.1").String())...)
	if !strings.Contains(out, "is free") {
		t.Errorf("explain of a free address:\n%s", out)
	}
	failCtl(t, cmd("endpoints", "explain", "nope"), `"nope" is not an IP address`)

	// The port's device has been gone for an hour: a leak, released only
	// with --apply.
	report(false)
	out, _, _ = ctl(t, cmd("check")...)
	if !strings.Contains(out, "leak vms "+vm.Addr.String()) || !strings.Contains(out, "repair: releases VM port port-1") {
		t.Errorf("check of a leaked port:\n%s", out)
	}
	failCtl(t, cmd("check", "--apply"), "--apply releases what --repair finds")
	if out := mustCtl(t, cmd("check", "--repair")...); !strings.Contains(out, "would release leaked VM port port-1") || !strings.Contains(out, "dry run") {
		t.Errorf("check --repair:\n%s", out)
	}
	if eps, _ := node.Endpoints(ctx); len(eps) != 1 {
		t.Fatalf("a dry run released: %v", eps)
	}
	if out := mustCtl(t, cmd("check", "--repair", "--apply")...); !strings.Contains(out, "released leaked VM port port-1") {
		t.Errorf("check --repair --apply:\n%s", out)
	}
	if eps, _ := node.Endpoints(ctx); len(eps) != 0 {
		t.Fatalf("after the repair: %v", eps)
	}
}

// TestCtlNamespaces: set, list and unset a namespace's own default
// network; a network that does not admit the namespace is refused.
func TestCtlNamespaces(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	l := srv.PKI
	a := []string{"--server", srv.URL, "--ca", l.CA.Cert, "--cert", l.Admin.Cert, "--key", l.Admin.Key}
	cmd := func(args ...string) []string { return append(append([]string{}, a...), args...) }
	mustCtl(t, cmd("topology", "apply", writeTopology(t, clienttest.Topology))...)
	if out := mustCtl(t, cmd("namespaces", "set", "openstack", "vms")...); out != "namespace openstack defaults to network vms\n" {
		t.Errorf("set:\n%s", out)
	}
	if out := mustCtl(t, cmd("namespaces", "list")...); !strings.Contains(out, "openstack  vms") {
		t.Errorf("list:\n%s", out)
	}
	failCtl(t, cmd("namespaces", "set", "web", "vms"), "does not admit")
	mustCtl(t, cmd("namespaces", "unset", "openstack")...)
	if out := mustCtl(t, cmd("namespaces", "list")...); strings.Contains(out, "openstack") {
		t.Errorf("list after unset:\n%s", out)
	}
}
