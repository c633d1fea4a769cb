package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// ProbePort is the TCP port every probe listener binds in its pod.
const ProbePort = 4747

// ProbeTarget is one endpoint of the reachability matrix: a pod or a VM
// (or, in tests, a host) with its namespace and address.
type ProbeTarget struct {
	Name string `json:"name"`
	// Kind is "pod" or "vm".
	Kind  string     `json:"kind,omitempty"`
	Host  string     `json:"host,omitempty"`
	Netns string     `json:"netns"`
	Addr  netip.Addr `json:"addr"`
	// Addr6 is a dual-stack target's address of the other family than
	// Addr's (despite the name, IPv4 when Addr is IPv6); probed as well.
	Addr6 netip.Addr `json:"addr6,omitzero"`
}

// addrOf is t's address of the family (4 or 6), if it has one.
func (t ProbeTarget) addrOf(family int) (netip.Addr, bool) {
	for _, a := range []netip.Addr{t.Addr, t.Addr6} {
		if a.IsValid() && familyOf(a) == family {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func familyOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// ProbeResult is one ordered pair. OK is TCP and ICMP both.
type ProbeResult struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Family is the address family probed, 4 or 6: a pair of dual-stack
	// targets has one result per family.
	Family int  `json:"family"`
	OK     bool `json:"ok"`
	TCP    bool `json:"tcp"`
	ICMP   bool `json:"icmp"`
	// MS is the TCP connect time in milliseconds (0 when TCP failed).
	MS    float64 `json:"ms"`
	Error string  `json:"error,omitempty"`
}

// ProbeReport is the reachability matrix: every target to every other.
type ProbeReport struct {
	Pods    []ProbeTarget `json:"pods"`
	Results []ProbeResult `json:"results"`
}

// Failed counts the pairs that are not OK.
func (r *ProbeReport) Failed() int {
	n := 0
	for _, res := range r.Results {
		if !res.OK {
			n++
		}
	}
	return n
}

// probeAttempts and probeTimeout bound one pair: the first packet to a new
// neighbour may wait for ARP, so one loss is forgiven.
const (
	probeAttempts = 3
	probeTimeout  = time.Second
)

// Probe runs real TCP and ICMP probes from every target to every other, all
// pairs in parallel. Each target gets a TCP listener inside its namespace
// that answers with the target's name, so a probe that reaches the wrong
// pod fails; ICMP echo goes out of a raw socket made inside the source's
// namespace (a socket keeps the namespace it was made in).
func Probe(ctx context.Context, targets []ProbeTarget) (*ProbeReport, error) {
	rep := &ProbeReport{Pods: targets, Results: []ProbeResult{}}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, t := range targets {
		for _, a := range []netip.Addr{t.Addr, t.Addr6} {
			if !a.IsValid() {
				continue
			}
			var l net.Listener
			err := ns.WithNetNSPath(NetnsPath(t.Netns), func(ns.NetNS) error {
				var err error
				l, err = net.Listen("tcp", netip.AddrPortFrom(a, ProbePort).String())
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("probe listener for %s on %s: %w", t.Name, a, err)
			}
			listeners = append(listeners, l)
			go serveName(l, t.Name)
		}
	}
	results := make([]ProbeResult, 0, len(targets)*len(targets))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, 64)
	)
	for _, from := range targets {
		for _, to := range targets {
			if from.Name == to.Name {
				continue
			}
			for _, fam := range []int{4, 6} {
				_, ok1 := from.addrOf(fam)
				dst, ok2 := to.addrOf(fam)
				if !ok1 || !ok2 {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					res := probePair(ctx, from, to, dst)
					mu.Lock()
					results = append(results, res)
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	order := map[string]int{}
	for i, t := range targets {
		order[t.Name] = i
	}
	slices.SortFunc(results, func(a, b ProbeResult) int {
		if c := order[a.From] - order[b.From]; c != 0 {
			return c
		}
		if c := order[a.To] - order[b.To]; c != 0 {
			return c
		}
		return a.Family - b.Family
	})
	rep.Results = results
	return rep, ctx.Err()
}

// serveName answers every connection with name and a newline.
func serveName(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(probeTimeout))
			_, _ = c.Write([]byte(name + "\n"))
		}()
	}
}

// probePair probes to's address dst from from's address src (one family).
func probePair(ctx context.Context, from, to ProbeTarget, dst netip.Addr) ProbeResult {
	res := ProbeResult{From: from.Name, To: to.Name, Family: familyOf(dst)}
	var tcpErr, icmpErr error
	err := ns.WithNetNSPath(NetnsPath(from.Netns), func(ns.NetNS) error {
		// Both sockets are made here, on this thread, inside from's
		// namespace; the ICMP one first so it sees the echo reply.
		network, wildcard := "ip4:icmp", "0.0.0.0"
		if res.Family == 6 {
			network, wildcard = "ip6:ipv6-icmp", "::"
		}
		conn, err := net.ListenPacket(network, wildcard)
		if err != nil {
			icmpErr = fmt.Errorf("icmp socket: %w", err)
		} else {
			defer conn.Close()
		}
		for range probeAttempts {
			var ms float64
			if ms, tcpErr = tcpProbe(ctx, to.Name, dst); tcpErr == nil {
				res.TCP, res.MS = true, ms
				break
			}
		}
		if conn != nil {
			id := uint16(rand.Uint32())
			for seq := range probeAttempts {
				if icmpErr = icmpProbe(ctx, conn.(*net.IPConn), dst, id, uint16(seq)); icmpErr == nil {
					res.ICMP = true
					break
				}
			}
		}
		return nil
	})
	var errs []string
	if err != nil {
		errs = append(errs, err.Error())
	}
	if tcpErr != nil {
		errs = append(errs, "tcp: "+tcpErr.Error())
	}
	if icmpErr != nil {
		errs = append(errs, "icmp: "+icmpErr.Error())
	}
	res.OK = res.TCP && res.ICMP
	res.Error = strings.Join(errs, "; ")
	return res
}

func tcpProbe(ctx context.Context, name string, dst netip.Addr) (float64, error) {
	d := net.Dialer{Timeout: probeTimeout}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, ProbePort).String())
	if err != nil {
		return 0, err
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("read the answer: %w", err)
	}
	if got := strings.TrimSpace(line); got != name {
		return 0, fmt.Errorf("%s answered as %q: the address leads to the wrong pod", dst, got)
	}
	return ms, nil
}

// icmpProbe sends one echo request (ICMPv4 or ICMPv6, by dst's family)
// and waits for its reply from dst.
func icmpProbe(ctx context.Context, conn *net.IPConn, dst netip.Addr, id, seq uint16) error {
	msg, reply := echoRequest(id, seq, []byte("terrane-lab")), byte(0)
	if dst.Is6() && !dst.Is4In6() {
		// ICMPv6: echo request 128, reply 129; the kernel fills in the
		// checksum (it covers a pseudo-header it knows).
		msg[0], msg[2], msg[3], reply = 128, 0, 0, 129
	}
	if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	deadline := time.Now().Add(probeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, src, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("no echo reply within " + probeTimeout.String())
			}
			return err
		}
		a, ok := src.(*net.IPAddr)
		if !ok || n < 8 || buf[0] != reply {
			continue
		}
		from, _ := netip.AddrFromSlice(a.IP)
		if from.Unmap() == dst && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
			return nil
		}
	}
}

// echoRequest builds an ICMPv4 echo request.
func echoRequest(id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Matrix renders a report as a table (rows from, columns to: ✓ reached by
// TCP and ICMP, ✗ not, t or i only one of them), one per address family
// when the report has two (- where the pair has no addresses of the
// family), and a summary line.
func (r *ProbeReport) Matrix() string {
	var fams []int
	for _, res := range r.Results {
		if !slices.Contains(fams, res.Family) {
			fams = append(fams, res.Family)
		}
	}
	slices.Sort(fams)
	var b strings.Builder
	if len(fams) <= 1 {
		r.matrix(&b, 0)
	}
	for _, f := range fams[:min(len(fams), 2)] {
		if len(fams) > 1 {
			fmt.Fprintf(&b, "IPv%d\n", f)
			r.matrix(&b, f)
		}
	}
	total := len(r.Results)
	if f := r.Failed(); f == 0 {
		fmt.Fprintf(&b, "%d of %d pairs reachable (TCP and ICMP)\n", total, total)
	} else {
		fmt.Fprintf(&b, "%d of %d pairs reachable (TCP and ICMP); %d FAILED:\n", total-f, total, f)
		for _, res := range r.Results {
			if !res.OK {
				fam := ""
				if len(fams) > 1 {
					fam = fmt.Sprintf(" (IPv%d)", res.Family)
				}
				fmt.Fprintf(&b, "  %s -> %s%s: %s\n", res.From, res.To, fam, res.Error)
			}
		}
	}
	return b.String()
}

// matrix renders the table of one family (0: every result).
func (r *ProbeReport) matrix(b *strings.Builder, family int) {
	ok := map[[2]string]ProbeResult{}
	for _, res := range r.Results {
		if family == 0 || res.Family == family {
			ok[[2]string{res.From, res.To}] = res
		}
	}
	w := len("from\\to")
	for _, p := range r.Pods {
		w = max(w, len(p.Name))
	}
	fmt.Fprintf(b, "%-*s", w+2, "from\\to")
	for i := range r.Pods {
		fmt.Fprintf(b, " %3s", strconv.Itoa(i+1))
	}
	b.WriteByte('\n')
	for i, from := range r.Pods {
		fmt.Fprintf(b, "%-*s", w+2, from.Name)
		for j, to := range r.Pods {
			cell := "·"
			if i != j {
				res, probed := ok[[2]string{from.Name, to.Name}]
				switch {
				case !probed && family != 0:
					cell = "-" // not both of this family
				case res.OK:
					cell = "✓"
				case res.TCP:
					cell = "t"
				case res.ICMP:
					cell = "i"
				default:
					cell = "✗"
				}
			}
			fmt.Fprintf(b, " %3s", cell)
		}
		kind := ""
		if from.Kind == "vm" {
			kind = " (VM)"
		}
		addr := from.Addr
		if a, ok := from.addrOf(family); family != 0 && ok {
			addr = a
		}
		fmt.Fprintf(b, "   %d %s%s\n", i+1, addr, kind)
	}
}
