package labbench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// IperfRun is what one iperf3 TCP test measured, from its JSON report.
type IperfRun struct {
	// Gbps is the receiver's rate (what arrived), Gbit/s.
	Gbps float64 `json:"gbps"`
	// SenderGbps is the sender's rate, Gbit/s.
	SenderGbps  float64 `json:"sender_gbps"`
	Retransmits int64   `json:"retransmits"`
	Seconds     float64 `json:"seconds"`
	// CPU time of the iperf3 client and server processes, percent of one
	// core (user + system over wall time).
	ClientCPU float64 `json:"client_cpu_percent"`
	ServerCPU float64 `json:"server_cpu_percent"`
}

// iperfReport is the part of `iperf3 -c … -J` output the benchmark reads.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int64   `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
}

// ParseIperf reads an iperf3 client's JSON report (-J). A report holding
// an error, or no positive finite received rate, is an error.
func ParseIperf(data []byte) (IperfRun, error) {
	var r iperfReport
	if err := json.Unmarshal(data, &r); err != nil {
		return IperfRun{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return IperfRun{}, errors.New("iperf3: " + r.Error)
	}
	rx := r.End.SumReceived.BitsPerSecond
	if !(rx > 0) || math.IsInf(rx, 0) {
		return IperfRun{}, fmt.Errorf("iperf3 JSON: received rate %v: want a positive number (end.sum_received.bits_per_second)", rx)
	}
	return IperfRun{
		Gbps:        rx / 1e9,
		SenderGbps:  r.End.SumSent.BitsPerSecond / 1e9,
		Retransmits: r.End.SumSent.Retransmits,
		Seconds:     r.End.SumReceived.Seconds,
		ClientCPU:   r.End.CPU.HostTotal,
		ServerCPU:   r.End.CPU.RemoteTotal,
	}, nil
}
