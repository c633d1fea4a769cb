package labbench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/lab"
)

// The pods side of a chaos run: o.Hosts hosts on one L2 segment, each
// with an agent on the chaos servers. Every host keeps one probe pod for
// the whole run; churn pods are created and deleted beside them at
// o.PodRate through libcni, as a runtime does. Every pod pings every other
// from the moment both exist until one is deleted or its host lost.

// chaosHostLabel is the label the lab's hosts join their group by (the
// API workers' hosts have chaos: "yes").
const chaosHostLabel = "host"

// chaosSegment is the hosts' L2 segment.
const chaosSegment = "192.168.77."

func chaosHostName(i int) string { return fmt.Sprintf("h%d", i+1) }

// chaosScenario is the lab of a chaos run with hosts: the chaos topology,
// in which the lab's hosts form their own L2 group, and hosts on one
// segment with no router (each routes to its peers' blocks directly).
func chaosScenario(hosts int) string {
	var b strings.Builder
	b.WriteString("name: chaos\ndescription: the hosts of bench chaos\ntopology: |\n")
	for _, l := range strings.Split(strings.TrimSpace(chaosTopology), "\n") {
		b.WriteString("  " + l + "\n")
	}
	fmt.Fprintf(&b, "segments:\n  - {name: lan, subnet: %s0/24}\nhosts:\n", chaosSegment)
	for i := range hosts {
		fmt.Fprintf(&b, "  - {name: %s, segment: lan, ip: %s%d, labels: {chaos: %s}}\n", chaosHostName(i), chaosSegment, 11+i, chaosHostLabel)
	}
	return b.String()
}

// pairWatch pings one pod from another from the moment both exist.
type pairWatch struct {
	from, to lab.PodState
	e        *lab.Echoes
}

// chaosPods runs the pods and their probes.
type chaosPods struct {
	o     ChaosOptions
	n     lab.Names
	hosts []string

	mu      sync.Mutex
	out     map[string]string       // host → why it takes no pods now
	probes  map[string]lab.PodState // host → its probe pod
	watches []*pairWatch            // running
	stopped []*pairWatch
	live    map[string]lab.PodState // churn pods made and not deleted
	order   []string                // their creation order
	seq     int

	adds, dels, addFailures, delFailures, gone int
	examples                                   []string
}

func newChaosPods(o ChaosOptions) *chaosPods {
	p := &chaosPods{o: o, n: o.names(), out: map[string]string{}, probes: map[string]lab.PodState{}, live: map[string]lab.PodState{}}
	for i := range o.Hosts {
		p.hosts = append(p.hosts, chaosHostName(i))
	}
	return p
}

func (p *chaosPods) example(format string, args ...any) {
	if len(p.examples) < 10 {
		p.examples = append(p.examples, fmt.Sprintf(format, args...))
	}
}

// addProbe creates host's probe pod and starts the pings between it and
// every other probe pod.
func (p *chaosPods) addProbe(ctx context.Context, host string) error {
	p.mu.Lock()
	p.seq++
	name := fmt.Sprintf("probe-%s-%d", host, p.seq)
	p.mu.Unlock()
	ps, err := lab.AddPod(ctx, p.n.Lab, p.n.Dir, lab.Pod{Name: name, Host: host})
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.adds++
	p.probes[host] = *ps
	return p.watchLocked(ctx, *ps)
}

// watchLocked starts the pings between ps and every other pod, both ways.
// p.mu is held.
func (p *chaosPods) watchLocked(ctx context.Context, ps lab.PodState) error {
	for _, other := range append(slices.Collect(maps.Values(p.probes)), slices.Collect(maps.Values(p.live))...) {
		if other.Name == ps.Name {
			continue
		}
		for _, pair := range [][2]lab.PodState{{ps, other}, {other, ps}} {
			e, err := lab.StartEchoes(ctx, target(pair[0]), target(pair[1]), p.o.ProbeInterval)
			if err != nil {
				return fmt.Errorf("ping %s → %s: %w", pair[0].Name, pair[1].Name, err)
			}
			p.watches = append(p.watches, &pairWatch{from: pair[0], to: pair[1], e: e})
		}
	}
	return nil
}

func target(ps lab.PodState) lab.ProbeTarget {
	return lab.ProbeTarget{Name: ps.Name, Kind: "pod", Host: ps.Host, Netns: ps.Netns, Addr: ps.Addr()}
}

// stopWatches stops the pings to and from the pods of which is true
// (all, for nil): they should no longer reach.
func (p *chaosPods) stopWatches(which func(lab.PodState) bool) {
	p.mu.Lock()
	var stop []*pairWatch
	p.watches = slices.DeleteFunc(p.watches, func(w *pairWatch) bool {
		if which == nil || which(w.from) || which(w.to) {
			stop = append(stop, w)
			return true
		}
		return false
	})
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range stop {
		wg.Go(w.e.Stop)
	}
	wg.Wait()
	p.mu.Lock()
	p.stopped = append(p.stopped, stop...)
	p.mu.Unlock()
}

// churn creates and deletes pods at o.PodRate until ctx ends: each tick,
// on a random host that takes pods, a new pod below o.PodsPerHost, else
// the host's oldest deleted.
func (p *chaosPods) churn(ctx context.Context) {
	tokens := pace(ctx, p.o.PodRate)
	if tokens == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tokens:
		}
		p.churnOne(ctx)
	}
}

func (p *chaosPods) churnOne(ctx context.Context) {
	p.mu.Lock()
	host, err := p.pickHostLocked()
	if err != nil {
		p.mu.Unlock()
		return
	}
	var oldest string
	count := 0
	for _, name := range p.order {
		if p.live[name].Host == host {
			if oldest == "" {
				oldest = name
			}
			count++
		}
	}
	add := count < p.o.PodsPerHost
	p.seq++
	name := fmt.Sprintf("churn-%s-%d", host, p.seq)
	if !add {
		// Out of the pods that exist before its pings stop and its DEL
		// begins: no new pod starts pinging one on its way out.
		delete(p.live, oldest)
		p.order = slices.DeleteFunc(p.order, func(s string) bool { return s == oldest })
	}
	p.mu.Unlock()

	// One CNI call at most a minute, as a runtime bounds it.
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if add {
		ps, err := lab.AddPod(opCtx, p.n.Lab, p.n.Dir, lab.Pod{Name: name, Host: host})
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case err != nil:
			p.addFailures++
			p.example("pod add %s on %s: %v", name, host, err)
		case p.out[host] == hostLost:
			// Made as its host was being lost: it dies with it.
			p.adds++
			p.gone++
		default:
			p.adds++
			p.live[name] = *ps
			p.order = append(p.order, name)
			if err := p.watchLocked(ctx, *ps); err != nil {
				p.example("%v", err)
			}
		}
		return
	}
	p.stopWatches(func(ps lab.PodState) bool { return ps.Name == oldest })
	err = lab.DelPod(opCtx, p.n.Lab, p.n.Dir, oldest)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil && p.out[host] == hostLost:
		p.gone++ // its host was lost under the DEL
	case err != nil:
		p.delFailures++
		p.example("pod del %s on %s: %v", oldest, host, err)
	default:
		p.dels++
	}
}

// hostLost is why a lost host takes no pods.
const hostLost = "lost"

// setOut marks host as taking no pods (why != "") or taking them again.
func (p *chaosPods) setOut(host, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if why == "" {
		delete(p.out, host)
	} else {
		p.out[host] = why
	}
}

// pickHost is a random host that takes pods now.
func (p *chaosPods) pickHost() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pickHostLocked()
}

// pickHostLocked is pickHost with p.mu held.
func (p *chaosPods) pickHostLocked() (string, error) {
	var up []string
	for _, h := range p.hosts {
		if p.out[h] == "" {
			up = append(up, h)
		}
	}
	if len(up) == 0 {
		return "", errors.New("no host takes pods")
	}
	return up[rand.IntN(len(up))], nil
}

// killAgent kills host's agent -9; heal starts it again on its state.
func (p *chaosPods) killAgent(ctx context.Context) (target string, heal func() error, err error) {
	host, err := p.pickHost()
	if err != nil {
		return "", nil, err
	}
	p.setOut(host, "agent killed")
	if _, err := lab.KillDaemons(ctx, p.n.Lab, p.n.Dir, "agent", host); err != nil {
		return host, nil, err
	}
	return host, func() error {
		if err := lab.RestartAgent(ctx, p.n.Lab, p.n.Dir, host); err != nil {
			return err
		}
		p.setOut(host, "")
		return nil
	}, nil
}

// loseHost takes a host away as a machine that dies (its agent, its pods
// and its namespace gone), and removes it from the server as an operator
// (or Kubernetes' Node controller) does; heal builds it again, re-imaged,
// and gives it a new probe pod.
func (p *chaosPods) loseHost(ctx context.Context, admin func(context.Context, func(*client.Client) error) error) (target string, heal func() error, err error) {
	host, err := p.pickHost()
	if err != nil {
		return "", nil, err
	}
	// Its pods leave the pods that exist, in one step with the host
	// marked lost, before their pings stop: no pod made meanwhile starts
	// pinging one of them.
	p.mu.Lock()
	p.out[host] = hostLost
	for name, ps := range p.live {
		if ps.Host == host {
			delete(p.live, name)
			p.gone++
		}
	}
	p.order = slices.DeleteFunc(p.order, func(s string) bool { _, ok := p.live[s]; return !ok })
	delete(p.probes, host)
	p.mu.Unlock()
	p.stopWatches(func(ps lab.PodState) bool { return ps.Host == host })
	if err := lab.LoseHost(ctx, p.n.Lab, p.n.Dir, host); err != nil {
		return host, nil, err
	}
	if err := admin(ctx, func(c *client.Client) error {
		_, err := c.RemoveHost(ctx, host)
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == 404 {
			return nil // an earlier attempt removed it, its answer lost
		}
		return err
	}); err != nil {
		return host, nil, fmt.Errorf("remove host %s: %w", host, err)
	}
	return host, func() error {
		if err := lab.RebuildHost(ctx, p.n.Lab, p.n.Dir, host); err != nil {
			return err
		}
		if err := p.addProbe(ctx, host); err != nil {
			return err
		}
		p.setOut(host, "")
		return nil
	}, nil
}

// pairOutage is the longest time one pair that should reach did not.
type pairOutage struct {
	seconds float64
	pair    string
}

// outages stops every ping and returns, per window [at[i], at[i+1]) (the
// last open), the longest outage that began in it, and the whole run's.
func (p *chaosPods) outages(at []time.Time) (per []pairOutage, longest pairOutage, pairs, echoes, lost int) {
	p.stopWatches(nil)
	per = make([]pairOutage, len(at))
	pairSet := map[string]bool{}
	for _, w := range p.stopped {
		name := w.e.From.Name + " → " + w.e.To.Name
		pairSet[name] = true
		echoes += w.e.Sent()
		for _, o := range w.e.Outages() {
			lost += o.Echoes
			po := pairOutage{seconds: o.Duration().Seconds(), pair: name}
			if po.seconds > longest.seconds {
				longest = po
			}
			// The fault whose window the outage began in.
			i := sort.Search(len(at), func(i int) bool { return at[i].After(o.From) }) - 1
			if i >= 0 && po.seconds > per[i].seconds {
				per[i] = po
			}
		}
	}
	return per, longest, len(pairSet), echoes, lost
}

// verify compares what the server holds of the lab's hosts with the pods
// that exist (probe and churn), once the agents' reports caught up (up to
// a minute), and adds what differs to res: a pod whose address the server
// does not give to it (or to it alone) is lost; an address a host's
// agent reports beyond its pods (its blocks' used counts) is leaked.
func (p *chaosPods) verify(ctx context.Context, admin *client.Client, res *ChaosResult) error {
	p.mu.Lock()
	pods := append(slices.Collect(maps.Values(p.probes)), slices.Collect(maps.Values(p.live))...)
	res.PodAdds, res.PodDels, res.PodAddFailures, res.PodDelFailures, res.PodsGoneWithHosts = p.adds, p.dels, p.addFailures, p.delFailures, p.gone
	res.Pods = len(pods)
	res.Examples = append(res.Examples, p.examples...)
	p.mu.Unlock()
	byAddr := map[netip.Addr]string{}
	perHost := map[string]int{}
	for _, ps := range pods {
		if other, ok := byAddr[ps.Addr()]; ok {
			res.Duplicates++
			res.Examples = append(res.Examples, fmt.Sprintf("duplicate: pods %s and %s both have %s", other, ps.Name, ps.Addr()))
		}
		byAddr[ps.Addr()] = ps.Name
		perHost[ps.Host]++
	}
	var (
		lost, leaked []string
		excess       int
	)
	err := chaosAwait(ctx, time.Minute, "the server holding exactly the lab's pods", func(ctx context.Context) error {
		lost, leaked, excess = lost[:0], leaked[:0], 0
		for _, ps := range pods {
			ex, err := admin.Explain(ctx, ps.Addr())
			if err != nil {
				return err
			}
			var holders []string
			for _, h := range ex.Holders {
				holders = append(holders, h.Host+":"+h.Pod)
			}
			if want := ps.Host + ":" + cmp.Or(ps.Namespace, "default") + "/" + ps.Name; !slices.Equal(holders, []string{want}) {
				lost = append(lost, fmt.Sprintf("pod %s at %s on %s: the server says %q", ps.Name, ps.Addr(), ps.Host, holders))
			}
		}
		blocks, err := admin.Blocks(ctx, "")
		if err != nil {
			return err
		}
		used := map[string]int{}
		for _, bs := range blocks {
			for _, b := range bs {
				used[b.Host] += b.Used
			}
		}
		for _, h := range p.hosts {
			if used[h] > perHost[h] {
				excess += used[h] - perHost[h]
				leaked = append(leaked, fmt.Sprintf("host %s: %d addresses reported in its blocks, %d pods", h, used[h], perHost[h]))
			}
		}
		if len(lost)+len(leaked) > 0 {
			return fmt.Errorf("%d pods not held as made, %d hosts holding more than their pods", len(lost), len(leaked))
		}
		return nil
	})
	if err != nil {
		// What is still different after a minute is lost or leaked.
		res.Lost += len(lost)
		res.LeakedAfterGC += excess
		slices.Sort(lost)
		for _, m := range append(lost[:min(5, len(lost))], leaked...) {
			res.Examples = append(res.Examples, "pods: "+m)
		}
	}
	return nil
}
