//go:build linux

package linux

import (
	"strings"
	"testing"
)

// TestPrivilegedPrepareEndpointLink: the settings PrepareEndpointLink makes
// through rtnetlink are the ones /proc/sys shows, from values that differ
// before, and only on the device it was given.
func TestPrivilegedPrepareEndpointLink(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "prep")
	ns.ip(t, "link", "add", "trnprep0", "type", "veth", "peer", "name", "trnprep1")
	want := map[string]string{
		"ipv4/conf/%s/forwarding":   "1",
		"ipv4/conf/%s/proxy_arp":    "1",
		"ipv4/neigh/%s/proxy_delay": "0",
		"ipv4/conf/%s/rp_filter":    "1",
	}
	read := func(dev string) map[string]string {
		got := map[string]string{}
		for k := range want {
			key := strings.Replace(k, "%s", dev, 1)
			got[k] = strings.TrimSpace(run(t, "ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/"+key))
		}
		return got
	}
	for k, v := range read("trnprep0") {
		if v == want[k] {
			t.Fatalf("net/%s is %s before: the test cannot tell whether PrepareEndpointLink set it", strings.Replace(k, "%s", "trnprep0", 1), v)
		}
	}
	before := read("trnprep1")

	err := inNS(ns.h, func() error {
		x, err := OpenHost()
		if err != nil {
			return err
		}
		defer x.Close()
		return x.PrepareEndpointLink("trnprep0")
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range read("trnprep0") {
		if v != want[k] {
			t.Errorf("net/%s = %s, want %s", strings.Replace(k, "%s", "trnprep0", 1), v, want[k])
		}
	}
	for k, v := range read("trnprep1") {
		if v != before[k] {
			t.Errorf("the other device's net/%s changed from %s to %s", strings.Replace(k, "%s", "trnprep1", 1), before[k], v)
		}
	}

	err = inNS(ns.h, func() error {
		x, err := OpenHost()
		if err != nil {
			return err
		}
		defer x.Close()
		return x.PrepareEndpointLink("trnabsent")
	})
	if err == nil || !strings.Contains(err.Error(), "trnabsent") {
		t.Errorf("a device that does not exist: %v, want an error naming it", err)
	}
}
