package labbench

import (
	"strings"
	"testing"
)

// A trimmed report of iperf3 3.12 -c … -J.
const iperfReportSample = `{
  "start": {"connected": [{"socket": 5}], "version": "iperf 3.12"},
  "intervals": [],
  "end": {
    "streams": [],
    "sum_sent": {"start": 0, "end": 5.0, "seconds": 5.0, "bytes": 8000000000, "bits_per_second": 12800000000, "retransmits": 17, "sender": true},
    "sum_received": {"start": 0, "end": 5.0004, "seconds": 5.0004, "bytes": 7990000000, "bits_per_second": 12780000000, "sender": true},
    "cpu_utilization_percent": {"host_total": 98.5, "host_user": 1.2, "host_system": 97.3, "remote_total": 70.1, "remote_user": 3, "remote_system": 67.1},
    "sender_tcp_congestion": "cubic",
    "receiver_tcp_congestion": "cubic"
  }
}`

func TestParseIperf(t *testing.T) {
	got, err := ParseIperf([]byte(iperfReportSample))
	if err != nil {
		t.Fatal(err)
	}
	want := IperfRun{Gbps: 12.78, SenderGbps: 12.8, Retransmits: 17, Seconds: 5.0004, ClientCPU: 98.5, ServerCPU: 70.1}
	if got != want {
		t.Errorf("ParseIperf = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"not JSON", "iperf3: error", "iperf3 JSON"},
		{"error", `{"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}`, "iperf3: unable to connect"},
		{"no rate", `{"end": {"sum_sent": {"bits_per_second": 5}}}`, "received rate 0"},
		{"negative", `{"end": {"sum_received": {"bits_per_second": -1}}}`, "received rate -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIperf([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseIperf(f *testing.F) {
	f.Add([]byte(iperfReportSample))
	f.Add([]byte(`{"error": "x"}`))
	f.Add([]byte(`{"end": {"sum_received": {"bits_per_second": 1e400}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseIperf(data)
		if err == nil && !(r.Gbps > 0) {
			t.Fatalf("accepted a report with rate %v", r.Gbps)
		}
	})
}
