// Package cniplugin is the logic of terrane-cni, Terrane's CNI plugin: it
// parses the plugin configuration and CNI_ARGS, picks the network, wires the
// pod's veth pair (through internal/dataplane/linux) around one call to the
// node agent (internal/cniapi), rolls back on failure, and queues releases
// the agent could not take. It keeps no state of its own: the agent holds the
// addresses, and the host veth's name derives from the attachment.
package cniplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
)

// About is what the plugin prints when run without CNI_COMMAND.
const About = "terrane-cni: routed pod networking for Terrane (veth pair, /32 and /128 addresses from the node agent, gateways 169.254.1.1 and fe80::1)"

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Agent is the node agent as the plugin uses it; *cniapi.Client is one.
type Agent interface {
	Add(ctx context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error)
	Del(ctx context.Context, a cniapi.Attachment) error
	Check(ctx context.Context, a cniapi.Attachment) (cniapi.CheckResponse, error)
	GC(ctx context.Context, req cniapi.GCRequest) (cniapi.GCResponse, error)
	Status(ctx context.Context) (cniapi.StatusResponse, error)
}

var _ Agent = (*cniapi.Client)(nil)

// Wiring is the kernel work; LinuxWiring does it with netlink.
type Wiring interface {
	CreatePodVeth(v linux.PodVeth, mtu int) (linux.PodLinks, error)
	ConfigurePod(v linux.PodVeth, addr netip.Prefix, gw netip.Addr) error
	DeletePodVeth(v linux.PodVeth) error
	InspectPod(v linux.PodVeth) (linux.PodState, error)
	// SetPodGSOMaxSize gives both ends of the pair a GSO/GRO maximum
	// (BIG TCP).
	SetPodGSOMaxSize(v linux.PodVeth, size int) error
}

// LinuxWiring is the Wiring of internal/dataplane/linux. It keeps its
// netlink handles (one per namespace) and the links it created from one
// step to the next until Close: a command opens each namespace once.
type LinuxWiring struct {
	h linux.PodHandles
}

var _ Wiring = (*LinuxWiring)(nil)

func (w *LinuxWiring) CreatePodVeth(v linux.PodVeth, mtu int) (linux.PodLinks, error) {
	return w.h.CreatePodVeth(v, mtu)
}

func (w *LinuxWiring) ConfigurePod(v linux.PodVeth, addr netip.Prefix, gw netip.Addr) error {
	return w.h.ConfigurePod(v, addr, gw)
}

func (w *LinuxWiring) DeletePodVeth(v linux.PodVeth) error { return w.h.DeletePodVeth(v) }

func (w *LinuxWiring) InspectPod(v linux.PodVeth) (linux.PodState, error) { return linux.InspectPod(v) }

func (w *LinuxWiring) SetPodGSOMaxSize(v linux.PodVeth, size int) error {
	return w.h.SetPodGSOMaxSize(v, size)
}

// Close closes the handles; the next step opens them again.
func (w *LinuxWiring) Close() { w.h.Close() }

// Plugin runs CNI commands.
type Plugin struct {
	// Dial returns the agent client for a configuration's socket and
	// timeout.
	Dial func(socket string, timeout time.Duration) Agent
	// Wiring does the kernel work.
	Wiring Wiring
	// HostNetns is the host's namespace by path; empty: the plugin's own,
	// which is where a runtime runs it.
	HostNetns string
	// Stdout receives ADD's result, and an error result (PrintError).
	Stdout io.Writer

	// cniVersion is the version of the configuration the command read,
	// for its error result.
	cniVersion string
}

// New returns a Plugin that talks to the real agent and kernel.
func New() *Plugin {
	return &Plugin{
		Dial: func(socket string, timeout time.Duration) Agent {
			return cniapi.NewClient(socket, timeout)
		},
		Wiring: &LinuxWiring{},
		Stdout: os.Stdout,
	}
}

// Funcs are the plugin's commands for skel.PluginMainFuncs.
func (p *Plugin) Funcs() skel.CNIFuncs {
	ctx := context.Background()
	return skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			defer p.closeWiring()
			p.noteVersion(args)
			res, err := p.Add(ctx, args)
			if err != nil {
				return err
			}
			// The result at the configuration's version (0.4.0 and
			// older have their own shape).
			out, err := res.GetAsVersion(res.CNIVersion)
			if err != nil {
				return types.NewError(types.ErrIncompatibleCNIVersion, err.Error(), "")
			}
			return out.PrintTo(p.Stdout)
		},
		Del:    func(args *skel.CmdArgs) error { defer p.closeWiring(); p.noteVersion(args); return p.Del(ctx, args) },
		Check:  func(args *skel.CmdArgs) error { defer p.closeWiring(); p.noteVersion(args); return p.Check(ctx, args) },
		GC:     func(args *skel.CmdArgs) error { p.noteVersion(args); return p.GC(ctx, args) },
		Status: func(args *skel.CmdArgs) error { p.noteVersion(args); return p.Status(ctx, args) },
	}
}

// closeWiring closes what the Wiring keeps open between the steps of a
// command.
func (p *Plugin) closeWiring() {
	if c, ok := p.Wiring.(interface{ Close() }); ok {
		c.Close()
	}
}

// noteVersion keeps the configuration's cniVersion for the error result.
func (p *Plugin) noteVersion(args *skel.CmdArgs) {
	var conf struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(args.StdinData, &conf) == nil {
		p.cniVersion = conf.CNIVersion
	}
}

// ErrorResult is the CNI spec's error result. types.Error lacks its
// cniVersion, so skel prints results runtimes may refuse to parse.
type ErrorResult struct {
	CNIVersion string `json:"cniVersion"`
	Code       uint   `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

// PrintError writes e to Stdout as an error result, at the version of the
// configuration the command read, or the newest version the plugin
// supports when it failed before reading one (a missing CNI_COMMAND, a
// configuration that is not JSON). terrane-cni's main calls it for the
// error skel returns, then exits 1.
func (p *Plugin) PrintError(e *types.Error) error {
	v := p.cniVersion
	if v == "" {
		all := Versions.SupportedVersions()
		v = all[len(all)-1]
	}
	b, err := json.MarshalIndent(ErrorResult{CNIVersion: v, Code: e.Code, Msg: e.Msg, Details: e.Details}, "", "  ")
	if err != nil {
		return err
	}
	_, err = p.Stdout.Write(append(b, '\n'))
	return err
}

func (p *Plugin) veth(args *skel.CmdArgs) linux.PodVeth {
	return linux.PodVeth{
		HostNetns: p.HostNetns,
		HostName:  cniapi.HostVeth(args.ContainerID, args.IfName),
		PodNetns:  args.Netns,
		PodName:   args.IfName,
	}
}

func attachment(args *skel.CmdArgs) cniapi.Attachment {
	return cniapi.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

func parseConfig(data []byte) (*Config, error) {
	conf, err := ParseConfig(data)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	return conf, nil
}

// Add wires the pod: veth pair, agent Add, pod address and routes. Any
// failure after the pair exists removes it, and any failure after the agent
// allocated releases the address, so a failed ADD leaves nothing behind.
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) (*types100.Result, error) {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return nil, err
	}
	cniArgs, err := ParseArgs(args.Args)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "")
	}
	network, from := ChooseNetwork(cniArgs, conf)
	v := p.veth(args)

	links, err := p.Wiring.CreatePodVeth(v, conf.MTU)
	if errors.Is(err, linux.ErrHostVethExists) {
		// A repeated ADD for the attachment (a retry after a failed or
		// lost one): start over; the agent answers with the same address.
		if derr := p.Wiring.DeletePodVeth(v); derr != nil {
			return nil, types.NewError(types.ErrInternal, fmt.Sprintf("remove the stale veth pair of %s: %v", attachment(args).ID(), derr), "")
		}
		links, err = p.Wiring.CreatePodVeth(v, conf.MTU)
	}
	if err != nil {
		return nil, types.NewError(types.ErrInternal, err.Error(), "")
	}

	agent := p.Dial(conf.AgentSocket, conf.Timeout)
	resp, err := agent.Add(ctx, cniapi.AddRequest{
		Attachment:   attachment(args),
		Netns:        args.Netns,
		Network:      network,
		PodNamespace: cniArgs.PodNamespace,
		PodName:      cniArgs.PodName,
		PodUID:       cniArgs.PodUID,
		HostVeth:     v.HostName,
	})
	if err != nil {
		op := "agent add"
		if network != "" {
			op = fmt.Sprintf("agent add (network %q from %s)", network, from)
		}
		cerr := cniError(fmt.Errorf("%s: %w", op, err))
		if derr := p.Wiring.DeletePodVeth(v); derr != nil {
			cerr.Details = "and removing the veth pair failed: " + derr.Error()
		}
		return nil, cerr
	}

	if err := checkAddResponse(resp); err != nil {
		return nil, p.rollback(ctx, agent, conf, args, v, err)
	}
	for _, ad := range resp.Addresses() {
		if err := p.Wiring.ConfigurePod(v, ad.Addr, ad.Gateway); err != nil {
			return nil, p.rollback(ctx, agent, conf, args, v, err)
		}
	}
	if resp.GSOMaxSize > 0 {
		if err := p.Wiring.SetPodGSOMaxSize(v, resp.GSOMaxSize); err != nil {
			return nil, p.rollback(ctx, agent, conf, args, v, fmt.Errorf("BIG TCP (the agent's --big-tcp): %w", err))
		}
	}
	return addResult(conf.CNIVersion, args, v, links, resp), nil
}

// rollback undoes an ADD the agent answered: release, then the pair.
func (p *Plugin) rollback(ctx context.Context, agent Agent, conf *Config, args *skel.CmdArgs, v linux.PodVeth, cause error) *types.Error {
	e := types.NewError(types.ErrInternal, cause.Error(), "")
	var undo []error
	if err := p.release(ctx, agent, conf, attachment(args)); err != nil {
		undo = append(undo, err)
	}
	if err := p.Wiring.DeletePodVeth(v); err != nil {
		undo = append(undo, err)
	}
	if len(undo) > 0 {
		e.Details = "and the roll back failed: " + errors.Join(undo...).Error()
	}
	return e
}

// checkAddResponse refuses an answer the pod cannot be wired with.
func checkAddResponse(r cniapi.AddResponse) error {
	for i, ad := range r.Addresses() {
		switch {
		case !ad.Addr.IsValid() || ad.Addr.Bits() != ad.Addr.Addr().BitLen():
			return fmt.Errorf("agent add: address %s: want a single address (/32 or /128)", ad.Addr)
		case !ad.Gateway.IsValid() || ad.Gateway.Is4() != ad.Addr.Addr().Is4():
			return fmt.Errorf("agent add: gateway %s: want an address of the family of %s", ad.Gateway, ad.Addr)
		case i == 1 && ad.Addr.Addr().Is4() == r.Addr.Addr().Is4():
			return fmt.Errorf("agent add: second address %s: want the other family than %s", ad.Addr, r.Addr)
		}
	}
	if r.GSOMaxSize != 0 && (r.GSOMaxSize < linux.DefaultGSOSize || r.GSOMaxSize > linux.MaxGSOSize) {
		return fmt.Errorf("agent add: gsoMaxSize %d: want 0 or %d to %d bytes", r.GSOMaxSize, linux.DefaultGSOSize, linux.MaxGSOSize)
	}
	return nil
}

func addResult(cniVersion string, args *skel.CmdArgs, v linux.PodVeth, links linux.PodLinks, resp cniapi.AddResponse) *types100.Result {
	ipnet := func(p netip.Prefix) net.IPNet {
		return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	res := &types100.Result{
		CNIVersion: cniVersion,
		Interfaces: []*types100.Interface{
			{Name: v.HostName, Mac: links.HostMAC},
			{Name: args.IfName, Mac: links.PodMAC, Sandbox: args.Netns},
		},
	}
	for _, ad := range resp.Addresses() {
		gw := net.IP(ad.Gateway.AsSlice())
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if ad.Gateway.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		res.IPs = append(res.IPs, &types100.IPConfig{Interface: types100.Int(1), Address: ipnet(ad.Addr), Gateway: gw})
		res.Routes = append(res.Routes, &types.Route{Dst: ipnet(def), GW: gw})
	}
	return res
}

// Del releases the address and removes the pair. It succeeds when the
// namespace, the pair or the agent is gone: a release the agent cannot take
// now is queued for it. The release comes first: the agent stops routing
// to the pod while its veth still exists, so its route sync never looks
// for a device that is gone.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	var errs []error
	if err := p.release(ctx, p.Dial(conf.AgentSocket, conf.Timeout), conf, attachment(args)); err != nil {
		errs = append(errs, err)
	}
	if err := p.Wiring.DeletePodVeth(p.veth(args)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return cniError(errors.Join(errs...))
	}
	return nil
}

// release asks the agent to release a, and queues the release when the
// agent cannot be reached.
func (p *Plugin) release(ctx context.Context, agent Agent, conf *Config, a cniapi.Attachment) error {
	err := agent.Del(ctx, a)
	if err == nil {
		return nil
	}
	if !errors.Is(err, cniapi.ErrAgentUnreachable) {
		return fmt.Errorf("agent del: %w", err)
	}
	if qerr := cniapi.WriteQueued(conf.QueueDir, a); qerr != nil {
		return fmt.Errorf("agent del: %w; and queuing the release failed: %w", err, qerr)
	}
	return nil
}

// Status is the agent's readiness: code 50 when it is not ready or cannot
// be reached.
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	st, err := p.Dial(conf.AgentSocket, conf.Timeout).Status(ctx)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "terrane agent status: "+err.Error(), "")
	}
	if !st.Ready {
		reason := st.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return types.NewError(types.ErrPluginNotAvailable, "terrane agent is not ready: "+reason, "")
	}
	return nil
}

// GC asks the agent to release every attachment not in the configuration's
// cni.dev/valid-attachments. Host veths of released attachments are the
// agent's to delete; the plugin stays thin.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	req := cniapi.GCRequest{Valid: []cniapi.Attachment{}}
	for _, a := range conf.ValidAttachments {
		req.Valid = append(req.Valid, cniapi.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	if _, err := p.Dial(conf.AgentSocket, conf.Timeout).GC(ctx, req); err != nil {
		return cniError(fmt.Errorf("agent gc: %w", err))
	}
	return nil
}

// cniError gives err its CNI code: the agent's own, 11 (try again later)
// when the agent cannot be reached, 999 otherwise.
func cniError(err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	var ae *cniapi.Error
	switch {
	case errors.Is(err, cniapi.ErrAgentUnreachable):
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	case errors.As(err, &ae):
		return types.NewError(ae.Code, err.Error(), "")
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}
