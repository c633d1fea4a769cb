package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// PortSpec is one port lab probe --port asks about: a number and protocol
// (80/TCP), or a port name resolved on each destination pod
// (serve-80-tcp).
type PortSpec struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

func (p PortSpec) String() string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("%d/%s", p.Port, p.Protocol)
}

// ParsePortSpec reads 80/TCP, 81/udp, 80 (TCP) or a port name.
func ParsePortSpec(s string) (PortSpec, error) {
	num, proto, hasProto := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	if err != nil {
		if hasProto || s == "" || strings.ToLower(s) != s || len(s) > 15 {
			return PortSpec{}, fmt.Errorf("--port %q: give PORT/PROTOCOL (80/TCP, 53/UDP) or a port name (serve-80-tcp)", s)
		}
		return PortSpec{Name: s}, nil
	}
	if n < 1 || n > 65535 {
		return PortSpec{}, fmt.Errorf("--port %q: a port is 1 to 65535", s)
	}
	proto = strings.ToUpper(proto)
	switch proto {
	case "":
		proto = "TCP"
	case "TCP", "UDP":
	default:
		return PortSpec{}, fmt.Errorf("--port %q: the lab probes TCP or UDP", s)
	}
	return PortSpec{Port: n, Protocol: proto}, nil
}

// PortTarget is a pod as port probes see it: namespace/name, its namespace
// and address, and the ports it serves (for named ports).
type PortTarget struct {
	Pod   string     `json:"pod"`
	Netns string     `json:"netns"`
	Addr  netip.Addr `json:"addr"`
	Ports []PodPort  `json:"ports,omitempty"`
}

// PortResult is one ordered pair on one port. OK: the destination answered
// with its own name.
type PortResult struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	// Spec is the --port the probe answers (a name, or PORT/PROTOCOL).
	Spec  string `json:"spec"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// PortReport is every ordered pair (a pod with itself included) on every
// port asked.
type PortReport struct {
	Pods    []PortTarget `json:"pods"`
	Ports   []PortSpec   `json:"ports"`
	Results []PortResult `json:"results"`
}

// PortTargets are the lab's pods for port probes, their ports from the
// scenario (a pod created by hand serves the numbered ports only).
func (s *State) PortTargets() []PortTarget {
	out := make([]PortTarget, 0, len(s.Pods))
	for _, p := range s.Pods {
		t := PortTarget{Pod: p.Namespace + "/" + p.Name, Netns: p.Netns, Addr: p.Addr(), Ports: p.Ports}
		if i := slices.IndexFunc(s.Scenario.Pods, func(q Pod) bool { return q.Name == p.Name && q.Namespace == p.Namespace }); i >= 0 && len(t.Ports) == 0 {
			t.Ports = s.Scenario.Pods[i].Ports
		}
		out = append(out, t)
	}
	return out
}

// Timeouts of port probes: a denied packet is dropped, so denial is a
// timeout; two tries forgive the first packet's neighbour resolution.
const (
	portProbeTimeout  = 400 * time.Millisecond
	portProbeAttempts = 2
)

// ProbePorts probes every ordered pair of targets, each with itself, on
// every port, all in parallel: each target answers on every port it is
// asked about (numbered ports on every target, named ports where the target
// names them) with a TCP listener and a UDP socket in its namespace that
// reply with its name.
func ProbePorts(ctx context.Context, targets []PortTarget, ports []PortSpec) (*PortReport, error) {
	rep := &PortReport{Pods: targets, Ports: ports, Results: []PortResult{}}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	// resolve is the port and protocol spec means on t, or false.
	resolve := func(t PortTarget, p PortSpec) (int, string, bool) {
		if p.Name == "" {
			return p.Port, p.Protocol, true
		}
		for _, pp := range t.Ports {
			if pp.Name == p.Name {
				return pp.Port, pp.Protocol, true
			}
		}
		return 0, "", false
	}
	for _, t := range targets {
		served := map[string]bool{}
		for _, p := range ports {
			port, proto, ok := resolve(t, p)
			key := fmt.Sprintf("%d/%s", port, proto)
			if !ok || served[key] {
				continue
			}
			served[key] = true
			c, err := servePort(t, port, proto)
			if err != nil {
				return nil, err
			}
			closers = append(closers, c)
		}
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, 128)
	)
	for _, from := range targets {
		for _, to := range targets {
			for _, p := range ports {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					res := PortResult{From: from.Pod, To: to.Pod, Spec: p.String()}
					port, proto, ok := resolve(to, p)
					if !ok {
						res.Error = fmt.Sprintf("%s names no port %q", to.Pod, p.Name)
					} else {
						res.Port, res.Protocol = port, proto
						res.OK, res.Error = probePort(ctx, from, to, port, proto)
					}
					mu.Lock()
					rep.Results = append(rep.Results, res)
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	order := map[string]int{}
	for i, t := range targets {
		order[t.Pod] = i
	}
	portOrder := map[string]int{}
	for i, p := range ports {
		portOrder[p.String()] = i
	}
	slices.SortFunc(rep.Results, func(a, b PortResult) int {
		if c := order[a.From] - order[b.From]; c != 0 {
			return c
		}
		if c := order[a.To] - order[b.To]; c != 0 {
			return c
		}
		return portOrder[a.Spec] - portOrder[b.Spec]
	})
	return rep, ctx.Err()
}

// servePort answers on port/proto in t's namespace with t's name.
func servePort(t PortTarget, port int, proto string) (func(), error) {
	addr := netip.AddrPortFrom(t.Addr, uint16(port)).String()
	var closer func()
	err := ns.WithNetNSPath(NetnsPath(t.Netns), func(ns.NetNS) error {
		if proto == "UDP" {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			go func() {
				buf := make([]byte, 512)
				for {
					_, a, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo([]byte(t.Pod+"\n"), a)
				}
			}()
			closer = func() { pc.Close() }
			return nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go serveName(l, t.Pod)
		closer = func() { l.Close() }
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("serve %d/%s in %s: %w", port, proto, t.Pod, err)
	}
	return closer, nil
}

// probePort sends from from's namespace to to's address and checks the
// answer names to.
func probePort(ctx context.Context, from, to PortTarget, port int, proto string) (bool, string) {
	dst := netip.AddrPortFrom(to.Addr, uint16(port)).String()
	var last error
	for range portProbeAttempts {
		var got string
		err := ns.WithNetNSPath(NetnsPath(from.Netns), func(ns.NetNS) error {
			dctx, cancel := context.WithTimeout(ctx, portProbeTimeout)
			defer cancel()
			var d net.Dialer
			c, err := d.DialContext(dctx, strings.ToLower(proto), dst)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(portProbeTimeout))
			if proto == "UDP" {
				if _, err := c.Write([]byte("who\n")); err != nil {
					return err
				}
			}
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			got = strings.TrimSpace(string(buf[:n]))
			return nil
		})
		switch {
		case err == nil && got == to.Pod:
			return true, ""
		case err == nil:
			last = fmt.Errorf("answered by %q", got)
		default:
			last = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	var ne net.Error
	if errors.As(last, &ne) && ne.Timeout() {
		return false, "timeout"
	}
	return false, last.Error()
}

// Matrix prints the report as one table per port: rows from, columns to,
// "." reached, "X" not.
func (r *PortReport) Matrix() string {
	var b strings.Builder
	idx := map[string]int{}
	for i, t := range r.Pods {
		idx[t.Pod] = i
	}
	for _, p := range r.Ports {
		fmt.Fprintf(&b, "port %s (rows: from, columns: to; . reached, X not)\n", p)
		grid := make([][]byte, len(r.Pods))
		for i := range grid {
			grid[i] = []byte(strings.Repeat("?", len(r.Pods)))
		}
		for _, res := range r.Results {
			if res.Spec != p.String() {
				continue
			}
			c := byte('X')
			if res.OK {
				c = '.'
			}
			grid[idx[res.From]][idx[res.To]] = c
		}
		for i, t := range r.Pods {
			fmt.Fprintf(&b, "  %-24s %d %s\n", t.Pod, i, strings.Join(strings.Split(string(grid[i]), ""), " "))
		}
	}
	return b.String()
}
