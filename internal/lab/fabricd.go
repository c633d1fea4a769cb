package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/topology"
)

// FabricStatus is what fabricd last did, in DIR/fabricd.json.
type FabricStatus struct {
	// Revision is the server state the routers carry.
	Revision int64     `json:"revision"`
	Applied  time.Time `json:"applied"`
	// Routes counts each router's routes.
	Routes map[string]int `json:"routes"`
	Error  string         `json:"error,omitempty"`
}

// ReadFabricStatus reads fabricd's status file.
func ReadFabricStatus(n Names) (*FabricStatus, error) {
	b, err := os.ReadFile(n.FabricStatus())
	if err != nil {
		return nil, err
	}
	var s FabricStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", n.FabricStatus(), err)
	}
	return &s, nil
}

func writeFabricStatus(n Names, s FabricStatus) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := n.FabricStatus() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, n.FabricStatus())
}

// RunFabric is fabricd: it follows the lab's server with Snapshot long
// polls and converges every router on RouterRoutes of each new state,
// writing only the difference. It returns when ctx ends.
func RunFabric(ctx context.Context, name, dir string, log *slog.Logger) error {
	st, err := LoadState(name, dir)
	if err != nil {
		return err
	}
	n := st.names()
	c, err := AdminClient(n)
	if err != nil {
		return err
	}
	planes, err := openRouterPlanes(st)
	if err != nil {
		return err
	}
	defer planes.Close()
	var (
		rev      int64
		topoText string
		topo     *topology.Topology
	)
	for ctx.Err() == nil {
		snap, err := c.Snapshot(ctx, rev, 30*time.Second)
		if err != nil {
			log.Warn("read the server's state", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if snap.Revision == rev && rev != 0 {
			continue // the long poll timed out: nothing changed
		}
		if snap.Revision == 0 {
			sleep(ctx, 200*time.Millisecond) // an empty store: poll gently
		}
		if snap.Topology != topoText {
			topoText, topo = snap.Topology, nil
			if snap.Topology != "" {
				if topo, err = topology.Load([]byte(snap.Topology)); err != nil {
					log.Error("the server's topology does not compile", "err", err)
				}
			}
		}
		status := FabricStatus{Revision: snap.Revision, Applied: time.Now(), Routes: map[string]int{}}
		want := RouterRoutes(st.Scenario, topo, fabricState(snap))
		diffs, err := applyRoutes(ctx, st, want, planes)
		for r, d := range diffs {
			if !d.Empty() {
				log.Info("router routes changed", "router", r, "revision", snap.Revision, "diff", d.String())
			}
		}
		for r, routes := range want {
			status.Routes[r] = len(routes)
		}
		if err != nil {
			status.Error = err.Error()
			log.Error("program the routers", "err", err)
		}
		if werr := writeFabricStatus(n, status); werr != nil {
			log.Error("write status", "err", werr)
		}
		if err != nil {
			sleep(ctx, time.Second)
			continue // retry the same revision
		}
		rev = snap.Revision
	}
	return nil
}

func fabricState(s *api.Snapshot) FabricState {
	return FabricState{Hosts: s.Hosts, Blocks: s.Blocks, Groups: s.Groups}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
