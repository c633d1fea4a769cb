package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// A VPC router plays the cloud: `terrane lab vpcd` serves a fake EC2
// (internal/cloud/ec2fake) in the fabric namespace with the router's route
// table, the lab's server runs its VPC reconciler against it
// (--vpc-config), and every change the reconciler makes to the table is
// mirrored, from the fake's change hook, into the router's kernel table
// (RouterTable): a route to an instance becomes a route via that host.
// Pods of different zones reach each other only through those routes.

// VPCStatus is what vpcd last did, in DIR/vpcd.json.
type VPCStatus struct {
	// Endpoint is the fake EC2's URL (the server's --vpc-config endpoint).
	Endpoint   string `json:"endpoint"`
	RouteTable string `json:"routeTable"`
	Budget     int    `json:"budget"`
	// Routes is how many of Terrane's routes (origin CreateRoute) the
	// table holds now, MaxRoutes the most it ever held.
	Routes    int `json:"routes"`
	MaxRoutes int `json:"maxRoutes"`
	// Changes counts the route changes the reconciler made.
	Changes int `json:"changes"`
	// SourceDestCheckOff lists the instances whose check the reconciler
	// turned off, sorted.
	SourceDestCheckOff []string  `json:"sourceDestCheckOff,omitempty"`
	Applied            time.Time `json:"applied,omitzero"`
	Error              string    `json:"error,omitempty"`
}

// ReadVPCStatus reads vpcd's status file.
func ReadVPCStatus(n Names) (*VPCStatus, error) {
	b, err := os.ReadFile(n.VPCStatus())
	if err != nil {
		return nil, err
	}
	var s VPCStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", n.VPCStatus(), err)
	}
	return &s, nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// VPCKernelRoutes turns the fake's route table into the VPC router's
// kernel routes (pure): each active route of Terrane's (origin
// CreateRoute) to an instance becomes a route via the host carrying that
// instance ID. Routes to unknown instances and blackholes are left out and
// reported.
func VPCKernelRoutes(sc *Scenario, table []ec2fake.Route) ([]dataplane.Route, []string) {
	byInstance := map[string]netip.Addr{}
	for _, h := range sc.Hosts {
		if id := h.Labels[InstanceLabel]; id != "" {
			byInstance[id] = h.IP
		}
	}
	var out []dataplane.Route
	var problems []string
	for _, r := range table {
		if r.Origin != ec2fake.OriginCreateRoute || r.Instance == "" {
			continue
		}
		ip, ok := byInstance[r.Instance]
		switch {
		case r.State != ec2fake.StateActive:
			problems = append(problems, fmt.Sprintf("%s → %s is %s", r.Dst, r.Instance, r.State))
		case !ok:
			problems = append(problems, fmt.Sprintf("%s → %s: no host has that instance ID", r.Dst, r.Instance))
		default:
			out = append(out, dataplane.Route{Dst: r.Dst, Via: ip})
		}
	}
	slices.SortFunc(out, dataplane.CompareRoutes)
	return out, problems
}

// vpcConfig is the server's --vpc-config for the lab's fake EC2.
func vpcConfig(endpoint string, v RouterVPC) string {
	return fmt.Sprintf(`# written by terrane lab up: the VPC router's route table at the lab's fake EC2
provider: aws
region: lab-1
endpoint: %s
instanceLabel: %s
interval: 2s
heartbeatTimeout: 40s   # agents beat every 10 s, the server stores a beat at most every 15 s: a live host is at most 25 s behind
routeTables:
  - id: %s
    budget: %d
`, endpoint, InstanceLabel, v.RouteTable, v.Budget)
}

// vpcEnv gives the server's AWS SDK credentials the fake does not check,
// and keeps it off the instance metadata service.
var vpcEnv = []string{"AWS_ACCESS_KEY_ID=terrane-lab", "AWS_SECRET_ACCESS_KEY=terrane-lab", "AWS_EC2_METADATA_DISABLED=true"}

// RunVPC is vpcd: the fake EC2 for the VPC router's route table, limited
// to the table's budget, whose every change is applied to the router's
// kernel table before the EC2 call that made it is answered. It returns
// when ctx ends.
func RunVPC(ctx context.Context, name, dir string, log *slog.Logger) error {
	st, err := LoadState(name, dir)
	if err != nil {
		return err
	}
	vr, ok := st.Scenario.VPCRouter()
	if !ok {
		return errors.New("the lab has no vpc router")
	}
	n := st.names()
	dp, err := linux.New(linux.Options{Table: RouterTable, NetNSPath: NetnsPath(n.Node(vr.Name))})
	if err != nil {
		return fmt.Errorf("router %s: %w", vr.Name, err)
	}
	defer dp.Close()
	var segments []netip.Prefix
	for _, s := range st.Scenario.Segments {
		if s.Router == vr.Name {
			segments = append(segments, s.Subnet)
		}
	}

	var (
		mu     sync.Mutex
		status = VPCStatus{RouteTable: vr.VPC.RouteTable, Budget: vr.VPC.Budget}
		fake   *ec2fake.Fake
	)
	mirror := func(c ec2fake.Change) {
		mu.Lock()
		defer mu.Unlock()
		switch c.Kind {
		case ec2fake.AttributeChange:
			if !c.SourceDestCheck && !slices.Contains(status.SourceDestCheckOff, c.Instance) {
				status.SourceDestCheckOff = append(status.SourceDestCheckOff, c.Instance)
				slices.Sort(status.SourceDestCheckOff)
			}
		default:
			status.Changes++
			status.Routes = c.Routes
			status.MaxRoutes = max(status.MaxRoutes, c.Routes)
			table, _ := fake.RouteTable(vr.VPC.RouteTable)
			want, problems := VPCKernelRoutes(st.Scenario, table)
			d, err := dp.Apply(ctx, dataplane.State{Table: RouterTable, Routes: want})
			if !d.Empty() {
				log.Info("vpc table changed", "change", string(c.Kind), "routes", c.Routes, "diff", d.String())
			}
			if err != nil {
				problems = append(problems, err.Error())
			}
			status.Error = strings.Join(problems, "; ")
			if status.Error != "" {
				log.Error("mirror the vpc table", "err", status.Error)
			}
		}
		status.Applied = time.Now()
		if err := writeJSONFile(n.VPCStatus(), status); err != nil {
			log.Error("write status", "err", err)
		}
	}
	fake = ec2fake.New(ec2fake.Options{RouteLimit: vr.VPC.Budget, OnChange: mirror})
	fake.AddRouteTable(vr.VPC.RouteTable, netx.Cover(segments...)...)
	srv, err := ec2fake.Start(fake, "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("serve the fake EC2: %w", err)
	}
	defer srv.Close()
	mu.Lock()
	status.Endpoint = srv.URL
	err = writeJSONFile(n.VPCStatus(), status)
	mu.Unlock()
	if err != nil {
		return err
	}
	log.Info("fake EC2 serving", "endpoint", srv.URL, "table", vr.VPC.RouteTable, "budget", vr.VPC.Budget)
	<-ctx.Done()
	return nil
}

// startVPCd runs `terrane lab vpcd` in the fabric namespace and writes
// the server's --vpc-config once the fake EC2 is serving.
func startVPCd(ctx context.Context, st *State) error {
	n := st.names()
	vr, _ := st.Scenario.VPCRouter()
	d, err := startDaemon(st, "vpcd", "", st.daemonNetns(), []string{st.Terrane, "lab", "vpcd", "--name", st.Name, "--dir", st.Dir})
	if err != nil {
		return err
	}
	var endpoint string
	if err := waitFor(ctx, d, 20*time.Second, "vpcd", func(context.Context) error {
		s, err := ReadVPCStatus(n)
		if err != nil {
			return err
		}
		endpoint = s.Endpoint
		return nil
	}); err != nil {
		return err
	}
	return os.WriteFile(n.VPCConfig(), []byte(vpcConfig(endpoint, *vr.VPC)), 0o600)
}

// WaitVPC waits until the server's VPC reconciler has reconciled the
// server's current state without error and vpcd has mirrored the table.
func WaitVPC(ctx context.Context, st *State, c *client.Client) error {
	if _, ok := st.Scenario.VPCRouter(); !ok {
		return nil
	}
	snap, err := c.Snapshot(ctx, 0, 0)
	if err != nil {
		return fmt.Errorf("read the server's state: %w", err)
	}
	return waitFor(ctx, nil, 30*time.Second, "vpc router", func(ctx context.Context) error {
		vs, err := c.VPC(ctx)
		switch {
		case err != nil:
			return err
		case !vs.Active:
			return errors.New("the server's VPC reconciler is not active")
		case vs.Revision < snap.Revision:
			return fmt.Errorf("the reconciler is at revision %d, the server at %d", vs.Revision, snap.Revision)
		case vs.LastError != "":
			return fmt.Errorf("the reconciler: %s", vs.LastError)
		}
		fs, err := ReadVPCStatus(st.names())
		if err != nil {
			return err
		}
		if fs.Error != "" {
			return fmt.Errorf("vpcd: %s", fs.Error)
		}
		return nil
	})
}

// checkVPCTopology: hosts behind a VPC router route by vpc in every
// network (the cloud's table is their only way to other zones).
func (sc *Scenario) checkVPCTopology(t *topology.Topology, add func(path, format string, args ...any)) {
	for i, h := range sc.Hosts {
		r, ok := sc.RouterOf(h.Name)
		if !ok || r.VPC == nil {
			continue
		}
		for _, n := range t.Networks {
			if g := leafOf(n.Tree, h); g != nil && g.Mode != topology.ModeVPC {
				add(fmt.Sprintf("hosts[%d].labels", i), "host %q sits behind vpc router %s, but its group %s of network %q routes by %s; set routing: vpc on the group",
					h.Name, r.Name, g.Path, n.Name, g.Mode)
			}
		}
	}
}

// VPCConfig and VPCStatus are vpcd's files.
func (n Names) VPCConfig() string { return filepath.Join(n.Dir, "vpc.yaml") }
func (n Names) VPCStatus() string { return filepath.Join(n.Dir, "vpcd.json") }
