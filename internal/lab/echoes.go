package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Echoes pings one target from another, over ICMPv4, every interval until
// stopped, and remembers when each echo was sent and whether it was
// answered: where `lab probe` asks once whether a pair reaches, Echoes
// says for how long, through a change, it did not.
type Echoes struct {
	From, To ProbeTarget
	interval time.Duration
	id       uint16

	mu       sync.Mutex
	sent     []time.Time
	answered []bool
	answer   chan struct{} // closed and replaced on each answer

	cancel context.CancelFunc
	done   chan struct{}
}

// Outage is a run of unanswered echoes: From is when the first was sent,
// To when the next answered one was (or the last echo sent plus the
// interval, for a run at the end).
type Outage struct {
	From, To time.Time
	Echoes   int
}

// Duration is how long the pair did not reach.
func (o Outage) Duration() time.Duration { return o.To.Sub(o.From) }

// echoGrace is how long Stop waits for the answers of the last echoes.
const echoGrace = time.Second

// StartEchoes starts pinging to from from. The socket is opened before it
// returns: an error there (e.g. from's namespace is gone) is returned.
func StartEchoes(ctx context.Context, from, to ProbeTarget, interval time.Duration) (*Echoes, error) {
	if !to.Addr.Is4() {
		return nil, errors.New("echoes: " + to.Name + " has no IPv4 address")
	}
	var conn *net.IPConn
	err := ns.WithNetNSPath(NetnsPath(from.Netns), func(ns.NetNS) error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err == nil {
			conn = c.(*net.IPConn)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &Echoes{From: from, To: to, interval: interval, id: uint16(rand.Uint32()), answer: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go e.run(ctx, conn)
	return e, nil
}

func (e *Echoes) run(ctx context.Context, conn *net.IPConn) {
	defer close(e.done)
	defer conn.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		e.read(conn)
	}()
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for ctx.Err() == nil {
		e.mu.Lock()
		seq := uint16(len(e.sent))
		e.sent = append(e.sent, time.Now())
		e.answered = append(e.answered, false)
		e.mu.Unlock()
		// An echo that cannot leave (no route) is one not answered.
		_, _ = conn.WriteTo(echoRequest(e.id, seq, []byte("terrane-echo")), &net.IPAddr{IP: e.To.Addr.AsSlice()})
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	// The last echoes' answers: until all came or the grace passed.
	grace := time.NewTimer(echoGrace)
	defer grace.Stop()
	for {
		e.mu.Lock()
		waiting, ch := !e.lastAnswered(), e.answer
		e.mu.Unlock()
		if !waiting {
			break
		}
		select {
		case <-ch:
			continue
		case <-grace.C:
		}
		break
	}
	_ = conn.SetReadDeadline(time.Now())
	<-read
}

// lastAnswered reports whether every echo sent within the grace before
// now was answered. Under e.mu.
func (e *Echoes) lastAnswered() bool {
	since := time.Now().Add(-echoGrace)
	for i := len(e.sent) - 1; i >= 0 && e.sent[i].After(since); i-- {
		if !e.answered[i] {
			return false
		}
	}
	return true
}

func (e *Echoes) read(conn *net.IPConn) {
	buf := make([]byte, 1500)
	for {
		n, src, err := conn.ReadFrom(buf)
		if err != nil {
			return // the deadline Stop set, or the socket closed
		}
		a, _ := src.(*net.IPAddr)
		if a == nil || n < 8 || buf[0] != 0 || binary.BigEndian.Uint16(buf[4:]) != e.id {
			continue
		}
		if from, _ := netip.AddrFromSlice(a.IP); from.Unmap() != e.To.Addr {
			continue
		}
		seq := binary.BigEndian.Uint16(buf[6:])
		e.mu.Lock()
		// The newest echo with that sequence number (they wrap at 2¹⁶).
		i := len(e.sent) - 1 - int(uint16(len(e.sent)-1)-seq)
		if i >= 0 && !e.answered[i] {
			e.answered[i] = true
			close(e.answer)
			e.answer = make(chan struct{})
		}
		e.mu.Unlock()
	}
}

// Stop stops sending and waits up to a second for the last answers.
func (e *Echoes) Stop() {
	e.cancel()
	<-e.done
}

// Sent is how many echoes were sent.
func (e *Echoes) Sent() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sent)
}

// Outages are the runs of unanswered echoes, in order.
func (e *Echoes) Outages() []Outage {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Outage
	for i := 0; i < len(e.sent); i++ {
		if e.answered[i] {
			continue
		}
		o := Outage{From: e.sent[i]}
		for i < len(e.sent) && !e.answered[i] {
			o.Echoes++
			i++
		}
		if i < len(e.sent) {
			o.To = e.sent[i]
		} else {
			o.To = e.sent[i-1].Add(e.interval)
		}
		out = append(out, o)
	}
	return out
}

// Lost is how many echoes went unanswered, and the longest run of them.
func (e *Echoes) Lost() (lost, longest int) {
	for _, o := range e.Outages() {
		lost += o.Echoes
		longest = max(longest, o.Echoes)
	}
	return lost, longest
}
