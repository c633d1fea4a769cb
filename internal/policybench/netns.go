package policybench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// NetnsPrefix starts the name of every namespace the benchmark makes.
const NetnsPrefix = "terrane-pb-"

// pairNet is a node namespace routing between a client and a server pod
// namespace, each pod on a veth to the node with one IPv4 address and a
// /32 route on the node (Terrane's routed layout).
type pairNet struct {
	node, client, server string
	clientIP, serverIP   netip.Addr
	made                 []string
}

var (
	pairClientIP = netip.MustParseAddr("10.1.0.2")
	pairServerIP = netip.MustParseAddr("10.1.0.3")
)

// run runs a command and returns its combined output; the error carries
// the command line and the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newNetns makes a namespace terrane-pb-ROLE-HEX with lo up.
func newNetns(ctx context.Context, role string) (string, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := NetnsPrefix + role + "-" + hex.EncodeToString(b[:])
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return "", err
	}
	if _, err := run(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		_ = delNetns(name)
		return "", err
	}
	return name, nil
}

// delNetns deletes a namespace (and with it its veths), with a context of
// its own: the benchmark's may be cancelled.
func delNetns(name string) error {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		return nil
	}
	_, err := run(context.Background(), "ip", "netns", "del", name)
	return err
}

// newPairNet builds the node and the two pods. On error what was made is
// removed; otherwise close removes it.
func newPairNet(ctx context.Context) (pn *pairNet, err error) {
	pn = &pairNet{clientIP: pairClientIP, serverIP: pairServerIP}
	defer func() {
		if err != nil {
			pn.close()
		}
	}()
	for _, ns := range []*string{&pn.node, &pn.client, &pn.server} {
		role := map[*string]string{&pn.node: "node", &pn.client: "client", &pn.server: "server"}[ns]
		if *ns, err = newNetns(ctx, role); err != nil {
			return nil, err
		}
		pn.made = append(pn.made, *ns)
	}
	steps := [][]string{{"ip", "netns", "exec", pn.node, "sysctl", "-qw", "net.ipv4.ip_forward=1"}}
	suffix := strings.TrimPrefix(pn.node, NetnsPrefix+"node-")
	for _, pod := range []struct {
		ns, host string
		ip       netip.Addr
	}{{pn.client, "tpb" + suffix + "c", pn.clientIP}, {pn.server, "tpb" + suffix + "s", pn.serverIP}} {
		steps = append(steps,
			[]string{"ip", "-n", pn.node, "link", "add", pod.host, "type", "veth", "peer", "name", "eth0", "netns", pod.ns},
			[]string{"ip", "-n", pn.node, "link", "set", pod.host, "up"},
			[]string{"ip", "-n", pn.node, "addr", "add", "169.254.1.1/32", "dev", pod.host},
			[]string{"ip", "-n", pn.node, "route", "add", pod.ip.String() + "/32", "dev", pod.host},
			[]string{"ip", "-n", pod.ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", pod.ns, "addr", "add", pod.ip.String() + "/32", "dev", "eth0"},
			[]string{"ip", "-n", pod.ns, "route", "add", "169.254.1.1/32", "dev", "eth0"},
			[]string{"ip", "-n", pod.ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
		)
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	return pn, nil
}

// close deletes the namespaces; it may be called more than once.
func (pn *pairNet) close() error {
	var errs []error
	for _, ns := range pn.made {
		errs = append(errs, delNetns(ns))
	}
	pn.made = nil
	return errors.Join(errs...)
}

// inNetns runs fn on a thread inside the named namespace; sockets fn opens
// stay in it. The thread is never unlocked: it ends with its goroutine.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
