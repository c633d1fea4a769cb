package lab

import (
	"maps"
	"strings"
	"testing"
)

func TestParseNetCounters(t *testing.T) {
	text := `Ip: Forwarding DefaultTTL InReceives ForwDatagrams OutRequests
Ip: 1 64 1200 37 900
Icmp: InMsgs InErrors
Icmp: 5 0
Tcp: RtoAlgorithm MaxConn
Tcp: 1 -1
garbage line
IpExt: InNoRoutes OutOctets
IpExt: 0 123456789012
`
	got := parseNetCounters(text)
	want := map[string]int64{"Ip:Forwarding": 1, "Ip:DefaultTTL": 64, "Ip:InReceives": 1200, "Ip:ForwDatagrams": 37, "Ip:OutRequests": 900,
		"Icmp:InMsgs": 5, "Icmp:InErrors": 0, "Tcp:RtoAlgorithm": 1, "Tcp:MaxConn": -1, "IpExt:InNoRoutes": 0, "IpExt:OutOctets": 123456789012}
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	// A names line whose values line is cut short is not read as values.
	if got := parseNetCounters("Ip: A B\nIp: 1\n"); len(got) != 0 {
		t.Errorf("mismatched lines: %v, want nothing", got)
	}
}

func FuzzParseNetCounters(f *testing.F) {
	f.Add("Ip: Forwarding ForwDatagrams\nIp: 1 2\nIpExt: OutOctets\nIpExt: 3\n")
	f.Fuzz(func(t *testing.T, text string) {
		for k := range parseNetCounters(text) {
			if !strings.Contains(k, ":") {
				t.Fatalf("key %q has no section", k)
			}
		}
	})
}
