package labbench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/lab"
)

// ChurnOptions configure RunChurn.
type ChurnOptions struct {
	LabOptions
	// Pods are created, then deleted, per round, at Rate per second (0: as
	// fast as one ADD after another goes).
	Pods, Rounds int
	Rate         float64
}

// Validate checks the sizes.
func (o *ChurnOptions) Validate() error {
	var errs []error
	if o.Pods < 1 || o.Pods > 1000 {
		errs = append(errs, fmt.Errorf("--pods %d: want 1 to 1000", o.Pods))
	}
	if o.Rounds < 1 {
		errs = append(errs, fmt.Errorf("--rounds %d: want at least 1", o.Rounds))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate %v: want pods per second, 0 for as fast as they go", o.Rate))
	}
	return errors.Join(errs...)
}

// ChurnResult is what the churn benchmark measured. Its JSON names are the
// interface of `terrane bench churn -o json`.
type ChurnResult struct {
	Machine Machine `json:"machine"`
	Pods    int     `json:"pods"`
	Rounds  int     `json:"rounds"`
	Rate    float64 `json:"rate_per_second"`
	// CNI is pods through terrane-cni and the host's agent (addresses from
	// the agent's blocks, batched address reports); API is the same churn
	// of endpoints through the server's API, one store transaction each:
	// the per-endpoint-write design (Romana v2's and Calico IPAM's).
	CNI ChurnSide `json:"cni"`
	API ChurnSide `json:"api_per_endpoint"`
	// Ratio is CNI ÷ API writes per endpoint created.
	Ratio float64 `json:"ratio_cni_over_api"`
	// CountLagSeconds is the longest wait, after a round's last ADD, until
	// the server counted every pod (GET /v1/blocks).
	CountLagSeconds float64 `json:"count_lag_seconds"`
	Goals           []Goal  `json:"goals"`
}

// ChurnSide is one path's store writes.
type ChurnSide struct {
	Created int `json:"created"`
	// StateWrites are records written by allocation commits (blocks,
	// endpoints); OtherWrites those outside the state (address reports,
	// heartbeats).
	StateWrites  int64   `json:"state_writes"`
	OtherWrites  int64   `json:"other_writes"`
	WritesPerPod float64 `json:"writes_per_endpoint"`
	Seconds      float64 `json:"seconds"`
}

// RunChurn builds a one-host lab and churns Pods pods through libcni,
// Rounds times (each round creates them all, waits until the server counts
// them, then deletes them), counting the server's store writes; then the
// same churn of endpoints through the API. The lab is removed before it
// returns.
func RunChurn(ctx context.Context, o ChurnOptions) (res *ChurnResult, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	_, down, err := upLab(ctx, o.LabOptions, cniScenario)
	if down != nil {
		defer down()
	}
	if err != nil {
		return nil, err
	}
	n := o.names()
	terrane, err := terranePlugin(n, cniHost, "terrane", "trn")
	if err != nil {
		return nil, err
	}
	c, err := lab.AdminClient(n)
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	b := &cniBench{n: n, hostNetns: lab.NetnsPath(n.Node(cniHost)), progress: o.progress, meter: o.meter()}
	o.progress("creating %d pod namespaces", o.Pods)
	if err := b.makeNetns(ctx, o.Pods); err != nil {
		return nil, err
	}
	res = &ChurnResult{Machine: thisMachine(), Pods: o.Pods, Rounds: o.Rounds, Rate: o.Rate}
	b.meter.SetTotal(2 * o.Rounds) // the cni rounds, then the api rounds
	b.meter.Step("cni: %d rounds of %d pods created and deleted through the agent", o.Rounds, o.Pods)

	// CNI: pods through the agent.
	before, err := storeWrites(ctx, c)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for r := range o.Rounds {
		pods := make([]*libcni.RuntimeConf, o.Pods)
		for i := range pods {
			pods[i] = runtimeConf(fmt.Sprintf("churn-r%d-%03d", r, i), lab.NetnsPath(b.netns[i]), "default", fmt.Sprintf("pod-%03d", i), newUID())
		}
		if err := paced(ctx, o.Rate, len(pods), b.inHost(func(i int) error {
			res, err := terrane.cni.AddNetworkList(ctx, terrane.list, pods[i])
			if err == nil {
				err = checkAddResult(res)
			}
			return err
		})); err != nil {
			return nil, fmt.Errorf("round %d: ADD: %w", r+1, err)
		}
		lag, err := waitCounted(ctx, c, o.Pods)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r+1, err)
		}
		res.CountLagSeconds = max(res.CountLagSeconds, lag.Seconds())
		if err := paced(ctx, o.Rate, len(pods), b.inHost(func(i int) error { return terrane.cni.DelNetworkList(ctx, terrane.list, pods[i]) })); err != nil {
			return nil, fmt.Errorf("round %d: DEL: %w", r+1, err)
		}
		if _, err := waitCounted(ctx, c, 0); err != nil {
			return nil, fmt.Errorf("round %d: %w", r+1, err)
		}
		o.progress("cni round %d/%d: %d pods created and deleted; the server counted them %.1f s after the last ADD", r+1, o.Rounds, o.Pods, lag.Seconds())
		b.meter.Add(1)
	}
	after, err := storeWrites(ctx, c)
	if err != nil {
		return nil, err
	}
	res.CNI = side(o.Pods*o.Rounds, before, after, time.Since(start))

	// API: the same churn, one store transaction per endpoint.
	b.meter.Step("api: %d rounds of %d endpoints allocated and released", o.Rounds, o.Pods)
	before = after
	start = time.Now()
	for r := range o.Rounds {
		ids := make([]string, o.Pods)
		for i := range ids {
			ids[i] = fmt.Sprintf("churn-r%d-%03d", r, i)
		}
		if err := paced(ctx, o.Rate, len(ids), func(i int) error {
			_, err := c.AllocateEndpoint(ctx, api.EndpointRequest{ID: ids[i], Host: cniHost})
			return err
		}); err != nil {
			return nil, fmt.Errorf("api round %d: allocate: %w", r+1, err)
		}
		if err := paced(ctx, o.Rate, len(ids), func(i int) error { _, err := c.ReleaseEndpoint(ctx, ids[i]); return err }); err != nil {
			return nil, fmt.Errorf("api round %d: release: %w", r+1, err)
		}
		o.progress("api round %d/%d: %d endpoints allocated and released", r+1, o.Rounds, o.Pods)
		b.meter.Add(1)
	}
	if after, err = storeWrites(ctx, c); err != nil {
		return nil, err
	}
	res.API = side(o.Pods*o.Rounds, before, after, time.Since(start))
	res.Ratio = ratio(res.CNI.WritesPerPod, res.API.WritesPerPod)
	res.Goals = []Goal{atMost("store writes per pod created (cni)", res.CNI.WritesPerPod, 0.05)}
	return res, nil
}

// inHost runs op on a thread inside the host's namespace, where a
// container runtime starts the plugin.
func (b *cniBench) inHost(op func(i int) error) func(i int) error {
	return func(i int) error {
		return ns.WithNetNSPath(b.hostNetns, func(ns.NetNS) error { return op(i) })
	}
}

func side(created int, before, after [2]int64, d time.Duration) ChurnSide {
	s := ChurnSide{Created: created, StateWrites: after[0] - before[0], OtherWrites: after[1] - before[1], Seconds: d.Seconds()}
	s.WritesPerPod = float64(s.StateWrites+s.OtherWrites) / float64(created)
	return s
}

// paced runs op(0..n-1) one after another, starting op i no earlier than
// i/rate seconds after the first (rate 0: at once).
func paced(ctx context.Context, rate float64, n int, op func(i int) error) error {
	start := time.Now()
	for i := range n {
		if rate > 0 {
			at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
		}
		if err := op(i); err != nil {
			return err
		}
	}
	return nil
}

// waitCounted waits until the server counts want addresses in use on the
// bench host and says how long that took.
func waitCounted(ctx context.Context, c *client.Client, want int) (time.Duration, error) {
	start := time.Now()
	got := -1
	for time.Since(start) < 30*time.Second {
		blocks, err := c.Blocks(ctx, "")
		if err != nil {
			return 0, err
		}
		got = 0
		for _, bs := range blocks {
			for _, b := range bs {
				if b.Host == cniHost {
					got += b.Used
				}
			}
		}
		if got == want {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("the server counts %d addresses in use on %s after 30 s, want %d", got, cniHost, want)
}

// storeWrites reads the server's counters of records written: by
// allocation commits, and outside the state.
func storeWrites(ctx context.Context, c *client.Client) ([2]int64, error) {
	text, err := c.Metrics(ctx)
	if err != nil {
		return [2]int64{}, err
	}
	var out [2]int64
	for i, name := range []string{"terrane_store_writes_total", "terrane_store_other_writes_total"} {
		found := false
		for line := range strings.Lines(text) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
				f, err := strconv.ParseFloat(v, 64) // large counts come as 1.234567e+06
				if err != nil {
					return out, fmt.Errorf("metric %s: %w", name, err)
				}
				out[i] = int64(f)
				found = true
			}
		}
		if !found {
			return out, fmt.Errorf("the server's /metrics has no %s", name)
		}
	}
	return out, nil
}
