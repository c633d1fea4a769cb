package labbench

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/lab"
)

func TestPickCPUs(t *testing.T) {
	for _, tc := range []struct {
		allowed        []int
		client, server int
	}{
		{nil, 0, 0},
		{[]int{0}, 0, 0},
		{[]int{3}, 3, 3},
		{[]int{0, 1}, 0, 1},
		{[]int{2, 5, 7}, 2, 5},
	} {
		if c, s := pickCPUs(tc.allowed); c != tc.client || s != tc.server {
			t.Errorf("pickCPUs(%v) = %d, %d, want %d, %d", tc.allowed, c, s, tc.client, tc.server)
		}
	}
	if cpus := allowedCPUs(); len(cpus) == 0 {
		t.Error("allowedCPUs: none")
	}
}

func TestThroughputOptionsValidate(t *testing.T) {
	ok := ThroughputOptions{Seconds: 3, Rounds: 8, EBPF: true, BigTCP: true}
	if err := ok.Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
	bad := ThroughputOptions{Seconds: 601, Rounds: 101, BigTCP: true}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "--seconds 601") || !strings.Contains(err.Error(), "--rounds 101") {
		t.Errorf("%+v: %v", bad, err)
	}
	if err := (&ThroughputOptions{Seconds: 1, Rounds: 1, BigTCP: true, OverlayBigTCP: true}).Validate(); err != nil {
		t.Errorf("--big-tcp --overlay-big-tcp: %v", err)
	}
	if err := (&ThroughputOptions{Seconds: 1, Rounds: 1, OverlayBigTCP: true}).Validate(); err == nil || !strings.Contains(err.Error(), "only with --big-tcp") {
		t.Errorf("--overlay-big-tcp alone: %v", err)
	}
}

func TestBigTCPNote(t *testing.T) {
	full := DeviceBigTCP{Requested: linux.BigTCPSize, LinkGSO: LinkGSO{Netns: "terrane-x-overlay-1", Dev: "eth0",
		GSOMaxSize: linux.BigTCPSize, GSOIPv4MaxSize: linux.BigTCPSize, GROMaxSize: linux.BigTCPSize, GROIPv4MaxSize: linux.BigTCPSize, TSOMaxSize: 524280}}
	if !full.BigTCPFull() {
		t.Error("all four at the size: not full")
	}
	if note := bigTCPNote([]DeviceBigTCP{full}, "terrane-x-"); note != "" {
		t.Errorf("note %q for devices that took BIG TCP", note)
	}
	vx := full
	vx.Netns, vx.Dev, vx.GSOMaxSize, vx.GSOIPv4MaxSize, vx.TSOMaxSize = "terrane-x-host-1", "vxlan42", 65536, 65536, 65536
	vx.Refused = []string{"gso_max_size 196608: invalid argument"}
	if vx.BigTCPFull() {
		t.Error("GSO at 64 KiB: full")
	}
	want := "overlay BIG TCP: the kernel kept lower limits than 196608 on host-1/vxlan42 gso 65536, gso_ipv4 65536, gro 196608, gro_ipv4 196608 (tso_max_size 65536)"
	if note := bigTCPNote([]DeviceBigTCP{full, vx}, "terrane-x-"); note != want {
		t.Errorf("note\n%q, want\n%q", note, want)
	}
}

// The result's JSON keeps the earlier fields and adds the shared-CPU
// phase, the sequential CIs and BIG TCP under snake_case names.
func TestThroughputResultJSON(t *testing.T) {
	r := &ThroughputResult{Seconds: 3, Rounds: 1, BigTCP: true,
		Paths: []Path{{Kind: KindRouted, ClientLink: LinkGSO{Dev: "eth0", GSOIPv4MaxSize: linux.BigTCPSize}}},
		Shared: SharedCPU{ClientCPU: 0, ServerCPU: 1, Paths: []SharedPath{{Kind: KindRouted, MedianGbps: 3, Runs: []IperfRun{{Gbps: 3}}}},
			RatioPair: RatioPair{RoutedOverHost: ratioStats([]float64{0.8})}},
		OverlayBigTCP: true, OverlayBigTCPDevices: []DeviceBigTCP{{Requested: linux.BigTCPSize, Refused: []string{"x"}}},
	}
	r.Goals = throughputGoals(r)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"machine", "seconds", "rounds", "iperf3", "ebpf", "big_tcp", "overlay_big_tcp", "overlay_big_tcp_devices", "paths",
		"ratio_routed_over_host", "ratio_routed_over_vxlan", "paired_ratio_routed_over_host", "paired_ratio_routed_over_vxlan",
		"sequential", "shared", "goals"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	shared := m["shared"].(map[string]any)
	for _, k := range []string{"client_cpu", "server_cpu", "paths", "routed_over_host", "routed_over_vxlan", "host_forwarded"} {
		if _, ok := shared[k]; !ok {
			t.Errorf("no shared.%q in %s", k, b)
		}
	}
	if s := shared["routed_over_host"].(map[string]any); s["median"] != 0.8 || len(s["ci95"].([]any)) != 2 || len(s["rounds"].([]any)) != 1 {
		t.Errorf("shared.routed_over_host %v", s)
	}
	if l := m["paths"].([]any)[0].(map[string]any)["client_link"].(map[string]any); l["gso_ipv4_max_size"] != float64(linux.BigTCPSize) || l["dev"] != "eth0" {
		t.Errorf("client_link %v", l)
	}
	goals := m["goals"].([]any)
	if len(goals) != 4 {
		t.Fatalf("%d goals", len(goals))
	}
	if _, ok := goals[0].(map[string]any)["ci95"]; ok {
		t.Error("the sequential goal has a CI")
	}
	if ci, ok := goals[2].(map[string]any)["ci95"].([]any); !ok || ci[0] != 0.8 || ci[1] != 0.8 {
		t.Errorf("the shared goal's CI: %v", goals[2])
	}
	if d := m["overlay_big_tcp_devices"].([]any)[0].(map[string]any); d["requested"] != float64(linux.BigTCPSize) || d["refused"] == nil || d["gso_ipv4_max_size"] == nil {
		t.Errorf("overlay_big_tcp_devices %v", d)
	}
}

// TestThroughputScenario6: the --ipv6 scenario is the IPv4 one made
// dual-stack: it parses, its segment has subnet6 (so hosts get IPv6
// addresses), and both pods ask for the IPv4 and the IPv6 network.
func TestThroughputScenario6(t *testing.T) {
	sc, err := lab.ParseScenario([]byte(tputScenario6))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Compile(); err != nil {
		t.Fatal(err)
	}
	if !sc.Segments[0].Subnet6.IsValid() || !sc.Hosts[1].IP6.IsValid() {
		t.Fatalf("segment %+v, host %+v: want a dual-stack segment", sc.Segments[0], sc.Hosts[1])
	}
	for _, p := range sc.Pods {
		if p.Annotations[lab.NetworkAnnotation] != "bench,bench6" {
			t.Errorf("pod %s annotations %v: want bench,bench6", p.Name, p.Annotations)
		}
	}
	if !strings.Contains(sc.Topology, "fd00:10::/48") {
		t.Errorf("topology lacks the IPv6 network:\n%s", sc.Topology)
	}
}
