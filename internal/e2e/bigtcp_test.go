//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/lab"
)

// TestPrivilegedE2EBigTCP: with the agents' --big-tcp, every host's uplink
// and both ends of every pod's pair carry the largest GSO size the uplink
// takes, every pod still
// reaches every other, and a bulk TCP transfer across racks (through a
// router) moves its bytes in GSO packets larger than 64 KiB.
func TestPrivilegedE2EBigTCP(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("needs iperf3 (apt-get install iperf3; .ci/run installs it)")
	}
	st := up(t, "two-racks", "--big-tcp")
	n := lab.Names{Lab: st.Name, Dir: st.Dir}
	// The agents' default: as large as the uplink (a veth) takes.
	up, err := linux.LinkGSOSizes(lab.NetnsPath(n.Node(st.Scenario.Hosts[0].Name)), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	want := min(up.TSOMax, linux.MaxGSOSize)
	if want <= linux.DefaultGSOSize {
		t.Fatalf("a veth uplink takes GSO packets of %d bytes at most: no BIG TCP to test", up.TSOMax)
	}
	check := func(ns, link string) {
		t.Helper()
		got, err := linux.LinkGSOSizes(lab.NetnsPath(ns), link)
		if err != nil {
			t.Fatal(err)
		}
		if got.GSOIPv4 != want || got.GROIPv4 != want || got.GSO != want || got.GRO != want {
			t.Errorf("%s in %s: %+v, want every size %d", link, ns, got, want)
		}
	}
	for _, h := range st.Scenario.Hosts {
		check(n.Node(h.Name), "eth0")
	}
	for _, p := range st.Pods {
		check(p.Netns, p.IfName)
		check(n.Node(p.Host), cniapi.HostVeth(p.ContainerID, p.IfName))
	}
	requireFullReachability(t, st)

	// a1 (rack 1) → b1 (rack 2): through both racks' routers.
	from, _ := st.Pod("a1")
	to, _ := st.Pod("b1")
	if from.Host == to.Host {
		t.Fatalf("pods a1 and b1 share host %s: the scenario changed", from.Host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", to.Netns, "iperf3", "-s", "-1", "-p", "5209")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	before := podCounters(t, from.Netns)
	var out []byte
	waitUntil(t, "iperf3 transfer "+from.Name+" → "+to.Name, 30*time.Second, func() bool {
		var err error
		out, err = exec.CommandContext(ctx, "ip", "netns", "exec", from.Netns, "iperf3", "-c", to.Addr().String(), "-p", "5209",
			"-n", "256M", "-J", "--connect-timeout", "1000").Output()
		return err == nil
	})
	var rep struct {
		End struct {
			SumSent struct {
				Bytes int64 `json:"bytes"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes int64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("iperf3 JSON: %v", err)
	}
	// iperf3 stops the server's count when the sender is done, so what is
	// still in flight is missing from it: with BIG TCP's socket buffers
	// that was up to 12% of the transfer here (32 MiB).
	if sent, got := rep.End.SumSent.Bytes, rep.End.SumReceived.Bytes; sent < 256<<20 || got < sent/2 {
		t.Fatalf("sent %d bytes, received %d: want 256 MiB sent and most of it received", sent, got)
	}
	after := podCounters(t, from.Netns)
	packets, octets := after[0]-before[0], after[1]-before[1]
	if packets == 0 || octets/packets <= 65536 {
		t.Errorf("the sender's IP layer sent %d bytes in %d packets (%d bytes each on average): want GSO packets above 64 KiB", octets, packets, octets/max(packets, 1))
	}
}

// podCounters reads IpOutRequests and IpExtOutOctets in a namespace.
func podCounters(t *testing.T, ns string) [2]int64 {
	t.Helper()
	c, err := lab.NetCounters(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	return [2]int64{c["Ip:OutRequests"], c["IpExt:OutOctets"]}
}
