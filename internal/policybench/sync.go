package policybench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"time"

	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/dataplane/nft"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/policygen"
)

// syncNode is the node of policygen.BigCluster whose rule set is synced,
// and relabelled the pod whose label the incremental change flips: pod 1
// (ns1, on node0) from app1 to app2, which joins the peers of the ns1
// policy admitting app2 to app1 — and so changes the ingress of node7's
// ns1/p701.
const (
	syncNode   = 7
	relabelled = 1
)

func runSync(ctx context.Context, o Options, res *Result) (err error) {
	c := policygen.BigCluster()
	node := policy.Node{Name: policygen.BigNode(syncNode), IPs: []netip.Addr{netip.MustParseAddr("192.168.0.7")}}
	s := &res.Sync
	s.Pods, s.Policies = len(c.Pods), len(c.Policies)
	meter := o.meter()
	meter.SetTotal(2 * o.SyncReps) // each full sync, then each incremental change
	meter.Step("full sync: %d policies over %d pods, node %s", s.Policies, s.Pods, node.Name)
	ns, err := newNetns(ctx, "sync")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, delNetns(ns)) }()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()

	var compiles, applies, totals []float64
	var base *policy.RuleSet
	for i := range o.SyncReps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tbl, err := nft.Open(int(h))
		if err != nil {
			return err
		}
		start := time.Now()
		rs, err := policy.Compile(c, node)
		if err != nil {
			tbl.Close()
			return err
		}
		compiled := time.Now()
		if err := tbl.Apply(rs); err != nil {
			tbl.Close()
			return fmt.Errorf("full sync: apply: %w", err)
		}
		applied := time.Now()
		compiles, applies, totals = append(compiles, ms(compiled.Sub(start))), append(applies, ms(applied.Sub(compiled))), append(totals, ms(applied.Sub(start)))
		if i == 0 {
			base = rs
			if s.Elements, err = nftElements(ctx, ns); err != nil {
				tbl.Close()
				return err
			}
		}
		err = errors.Join(tbl.Remove(), tbl.Close())
		if err != nil {
			return err
		}
		o.progress("full sync %d/%d: compile %.0f ms, apply %.0f ms", i+1, o.SyncReps, compiles[i], applies[i])
		meter.Add(1)
	}
	s.NodePods = len(base.Endpoints)
	for _, ep := range base.Endpoints {
		for _, d := range []policy.Direction{ep.Ingress, ep.Egress} {
			if d.Isolated {
				s.Isolated++
			}
		}
	}
	s.CompileMs, s.ApplyMs, s.TotalMs = sample(compiles), sample(applies), sample(totals)
	if s.Elements == 0 {
		return errors.New("full sync: the kernel holds no set elements after the apply")
	}

	// Incremental: the table holds the base and a Compiler has compiled
	// it (as an agent's has); flip the label, compile with it, apply the
	// difference; flip it back the next time.
	comp := policy.NewCompiler(node)
	if _, err := comp.Compile(c); err != nil {
		return err
	}
	tbl, err := nft.Open(int(h))
	if err != nil {
		return err
	}
	defer tbl.Close()
	if err := tbl.Apply(base); err != nil {
		return err
	}
	orig := c.Pods[relabelled].Labels
	changed := maps.Clone(orig)
	changed["app"] = "app2"
	compiles, applies, totals = nil, nil, nil
	meter.Step("incremental change: one pod's label, compiled and applied %d times", o.SyncReps)
	for i := range o.SyncReps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.Pods[relabelled].Labels = changed
		if i%2 == 1 {
			c.Pods[relabelled].Labels = orig
		}
		start := time.Now()
		rs, err := comp.Compile(c)
		if err != nil {
			return err
		}
		compiled := time.Now()
		if err := tbl.Apply(rs); err != nil {
			return fmt.Errorf("incremental change: apply: %w", err)
		}
		applied := time.Now()
		compiles, applies, totals = append(compiles, ms(compiled.Sub(start))), append(applies, ms(applied.Sub(compiled))), append(totals, ms(applied.Sub(start)))
		if fresh, err := policy.Compile(c, node); err != nil || fresh.Digest() != rs.Digest() {
			return fmt.Errorf("incremental change %d: the Compiler's rule set is not a fresh compile's (%v)", i+1, err)
		}
		if i == 0 {
			for j := range rs.Endpoints {
				if !reflect.DeepEqual(rs.Endpoints[j], base.Endpoints[j]) {
					s.ChangedEndpoints++
				}
			}
			if s.ChangedEndpoints == 0 {
				return fmt.Errorf("incremental change: relabelling pod %s changed no rule of node %s", c.Pods[relabelled].Key(), node.Name)
			}
		}
		o.progress("incremental change %d/%d: compile %.0f ms, apply %.2f ms", i+1, o.SyncReps, compiles[i], applies[i])
		meter.Add(1)
	}
	c.Pods[relabelled].Labels = orig
	s.IncCompileMs, s.IncApplyMs, s.IncTotalMs = sample(compiles), sample(applies), sample(totals)
	return tbl.Remove()
}
