package cniplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/testbin"
)

// fakeAgent records calls and answers from its fields.
type fakeAgent struct {
	calls   []string
	addReq  cniapi.AddRequest
	addResp cniapi.AddResponse
	addErr  error
	delErr  error
	onDel   func() // called as Del is
	check   cniapi.CheckResponse
	gcReq   cniapi.GCRequest
	status  cniapi.StatusResponse
	statErr error
}

func (a *fakeAgent) Add(_ context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error) {
	a.calls = append(a.calls, "add "+req.ID())
	a.addReq = req
	return a.addResp, a.addErr
}

func (a *fakeAgent) Del(_ context.Context, at cniapi.Attachment) error {
	a.calls = append(a.calls, "del "+at.ID())
	if a.onDel != nil {
		a.onDel()
	}
	return a.delErr
}

func (a *fakeAgent) Check(_ context.Context, at cniapi.Attachment) (cniapi.CheckResponse, error) {
	a.calls = append(a.calls, "check "+at.ID())
	return a.check, nil
}

func (a *fakeAgent) GC(_ context.Context, req cniapi.GCRequest) (cniapi.GCResponse, error) {
	a.calls = append(a.calls, "gc")
	a.gcReq = req
	return cniapi.GCResponse{}, nil
}

func (a *fakeAgent) Status(context.Context) (cniapi.StatusResponse, error) {
	return a.status, a.statErr
}

// fakeWiring keeps the set of host veths and records calls.
type fakeWiring struct {
	calls        []string
	veths        map[string]bool
	configureErr error
	deleteErr    error
	gsoErr       error
	state        linux.PodState
}

func (w *fakeWiring) CreatePodVeth(v linux.PodVeth, mtu int) (linux.PodLinks, error) {
	w.calls = append(w.calls, fmt.Sprintf("create %s %s mtu %d", v.HostName, v.PodName, mtu))
	if w.veths[v.HostName] {
		return linux.PodLinks{}, fmt.Errorf("create: %w", linux.ErrHostVethExists)
	}
	w.veths[v.HostName] = true
	return linux.PodLinks{HostMAC: "02:00:00:00:00:01", PodMAC: "02:00:00:00:00:02", PodIndex: 2}, nil
}

func (w *fakeWiring) ConfigurePod(v linux.PodVeth, addr netip.Prefix, gw netip.Addr) error {
	w.calls = append(w.calls, fmt.Sprintf("configure %s %s via %s", v.PodName, addr, gw))
	return w.configureErr
}

func (w *fakeWiring) DeletePodVeth(v linux.PodVeth) error {
	w.calls = append(w.calls, "delete "+v.HostName)
	if w.deleteErr != nil {
		return w.deleteErr
	}
	delete(w.veths, v.HostName)
	return nil
}

func (w *fakeWiring) InspectPod(linux.PodVeth) (linux.PodState, error) { return w.state, nil }

func (w *fakeWiring) SetPodGSOMaxSize(v linux.PodVeth, size int) error {
	w.calls = append(w.calls, fmt.Sprintf("gso %s %d", v.HostName, size))
	return w.gsoErr
}

func newTestPlugin(t *testing.T) (*Plugin, *fakeAgent, *fakeWiring, *bytes.Buffer) {
	agent := &fakeAgent{
		addResp: cniapi.AddResponse{Network: "blue", Addr: netip.MustParsePrefix("10.244.0.7/32"), Gateway: cniapi.GatewayV4},
		status:  cniapi.StatusResponse{Ready: true},
	}
	wiring := &fakeWiring{veths: map[string]bool{}}
	var out bytes.Buffer
	p := &Plugin{
		Dial: func(socket string, timeout time.Duration) Agent {
			if socket != "/run/test/agent.sock" || timeout != 3*time.Second {
				t.Errorf("dial %s with timeout %s, want the configured ones", socket, timeout)
			}
			return agent
		},
		Wiring: wiring,
		Stdout: &out,
	}
	return p, agent, wiring, &out
}

func cmdArgs(t *testing.T, cniVersion, extra string) *skel.CmdArgs {
	queue := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":%q,"name":"terrane","type":"terrane-cni","agentSocket":"/run/test/agent.sock",
		"queueDir":%q,"mtu":1450,"timeout":"3s","network":"from-config"%s}`, cniVersion, queue, extra)
	return &skel.CmdArgs{
		ContainerID: "c1", Netns: "/run/netns/pod1", IfName: "eth0",
		Args:      "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-0;K8S_POD_UID=0f6c",
		StdinData: []byte(conf),
	}
}

func queueDirOf(t *testing.T, args *skel.CmdArgs) string {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		t.Fatal(err)
	}
	return conf.QueueDir
}

func wantCode(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a CNI error with code %d", err, err, code)
	}
	if te.Code != code || !strings.Contains(te.Msg, msg) {
		t.Errorf("error code %d %q, want code %d containing %q", te.Code, te.Msg, code, msg)
	}
}

func TestAdd(t *testing.T) {
	p, agent, wiring, out := newTestPlugin(t)
	args := cmdArgs(t, "1.1.0", "")
	hostVeth := cniapi.HostVeth("c1", "eth0")
	if err := p.Funcs().Add(args); err != nil {
		t.Fatal(err)
	}
	want := cniapi.AddRequest{
		Attachment: cniapi.Attachment{ContainerID: "c1", IfName: "eth0"}, Netns: "/run/netns/pod1",
		Network: "from-config", PodNamespace: "web", PodName: "front-0", PodUID: "0f6c", HostVeth: hostVeth,
	}
	if agent.addReq != want {
		t.Errorf("agent add %+v, want %+v", agent.addReq, want)
	}
	wantCalls := []string{"create " + hostVeth + " eth0 mtu 1450", "configure eth0 10.244.0.7/32 via 169.254.1.1"}
	if !slices.Equal(wiring.calls, wantCalls) {
		t.Errorf("wiring calls %q, want %q", wiring.calls, wantCalls)
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	wantRes := `{"cniVersion":"1.1.0","interfaces":[{"mac":"02:00:00:00:00:01","name":"` + hostVeth + `"},` +
		`{"mac":"02:00:00:00:00:02","name":"eth0","sandbox":"/run/netns/pod1"}],` +
		`"ips":[{"address":"10.244.0.7/32","gateway":"169.254.1.1","interface":1}],` +
		`"routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}]}`
	if got := strings.TrimSpace(compact(t, out.Bytes())); got != wantRes {
		t.Errorf("result\n %s\nwant\n %s", got, wantRes)
	}
}

func compact(t *testing.T, b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestAddOldVersionResult(t *testing.T) {
	p, _, _, out := newTestPlugin(t)
	if err := p.Funcs().Add(cmdArgs(t, "0.4.0", "")); err != nil {
		t.Fatal(err)
	}
	res, err := version.NewResult("0.4.0", out.Bytes())
	if err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	r, ok := res.(*types040.Result)
	if !ok || r.CNIVersion != "0.4.0" || len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.244.0.7/32" || len(r.Interfaces) != 2 {
		t.Errorf("0.4.0 result %s", out)
	}
}

func TestAddNetworkPrecedence(t *testing.T) {
	p, agent, _, _ := newTestPlugin(t)
	args := cmdArgs(t, "1.1.0", `,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"from-annotation"}}`)
	if err := p.Funcs().Add(args); err != nil {
		t.Fatal(err)
	}
	if agent.addReq.Network != "from-annotation" {
		t.Errorf("network %q, want from-annotation", agent.addReq.Network)
	}
	args.Args += ";TERRANE_NETWORK=from-args"
	if err := p.Funcs().Add(args); err != nil {
		t.Fatal(err)
	}
	if agent.addReq.Network != "from-args" {
		t.Errorf("network %q, want from-args", agent.addReq.Network)
	}
}

func TestAddAgentErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		code uint
	}{
		{"agent refuses", &cniapi.Error{Code: cniapi.CodeInvalid, Message: `unknown network "x"`}, cniapi.CodeInvalid},
		{"agent busy", &cniapi.Error{Code: cniapi.CodeTryAgainLater, Message: "no block yet"}, cniapi.CodeTryAgainLater},
		{"agent down", fmt.Errorf("%w at /run/x: connection refused", cniapi.ErrAgentUnreachable), types.ErrTryAgainLater},
		{"other", errors.New("boom"), types.ErrInternal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, agent, wiring, out := newTestPlugin(t)
			agent.addErr = tt.err
			err := p.Funcs().Add(cmdArgs(t, "1.1.0", ""))
			wantCode(t, err, tt.code, tt.err.Error())
			if !strings.Contains(err.Error(), `network "from-config" from configuration field network`) {
				t.Errorf("error %q does not say which network was asked for and why", err)
			}
			if len(wiring.veths) != 0 {
				t.Errorf("veths left: %v", wiring.veths)
			}
			if slices.Contains(agent.calls, "del c1/eth0") {
				t.Error("released an address the agent never gave")
			}
			if out.Len() != 0 {
				t.Errorf("printed %s", out)
			}
		})
	}
}

func TestAddRollsBackAfterAgentAdd(t *testing.T) {
	t.Run("configure fails", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		wiring.configureErr = errors.New("no such device")
		err := p.Funcs().Add(cmdArgs(t, "1.1.0", ""))
		wantCode(t, err, types.ErrInternal, "no such device")
		if !slices.Equal(agent.calls, []string{"add c1/eth0", "del c1/eth0"}) || len(wiring.veths) != 0 {
			t.Errorf("agent calls %q, veths %v: want add, del and no veth", agent.calls, wiring.veths)
		}
	})
	t.Run("BIG TCP fails", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		agent.addResp.GSOMaxSize = 196608
		wiring.gsoErr = errors.New("invalid argument")
		err := p.Funcs().Add(cmdArgs(t, "1.1.0", ""))
		wantCode(t, err, types.ErrInternal, "BIG TCP")
		if !slices.Equal(agent.calls, []string{"add c1/eth0", "del c1/eth0"}) || len(wiring.veths) != 0 {
			t.Errorf("agent calls %q, veths %v: want add, del and no veth", agent.calls, wiring.veths)
		}
	})
	t.Run("bad GSO size", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		agent.addResp.GSOMaxSize = 1000
		err := p.Funcs().Add(cmdArgs(t, "1.1.0", ""))
		wantCode(t, err, types.ErrInternal, "gsoMaxSize 1000")
		if slices.ContainsFunc(wiring.calls, func(c string) bool { return strings.HasPrefix(c, "gso ") }) || len(wiring.veths) != 0 {
			t.Errorf("wiring calls %q, veths %v: want no GSO change and no veth", wiring.calls, wiring.veths)
		}
	})
	t.Run("bad agent answer", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		agent.addResp.Addr = netip.MustParsePrefix("10.244.0.0/24")
		err := p.Funcs().Add(cmdArgs(t, "1.1.0", ""))
		wantCode(t, err, types.ErrInternal, "want a single address")
		if !slices.Contains(agent.calls, "del c1/eth0") || len(wiring.veths) != 0 {
			t.Errorf("agent calls %q, veths %v", agent.calls, wiring.veths)
		}
	})
	t.Run("configure fails and the agent went away", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		wiring.configureErr = errors.New("no such device")
		agent.delErr = cniapi.ErrAgentUnreachable
		args := cmdArgs(t, "1.1.0", "")
		wantCode(t, p.Funcs().Add(args), types.ErrInternal, "no such device")
		q, err := cniapi.ReadQueued(queueDirOf(t, args))
		if err != nil || len(q) != 1 || q[0].ID() != "c1/eth0" {
			t.Errorf("queue %+v, %v: want the release of c1/eth0", q, err)
		}
	})
}

// TestAddBigTCP: the agent's gsoMaxSize reaches both ends of the pair
// after the pod is configured; without it the plugin leaves GSO alone.
func TestAddBigTCP(t *testing.T) {
	p, agent, wiring, _ := newTestPlugin(t)
	agent.addResp.GSOMaxSize = 196608
	if err := p.Funcs().Add(cmdArgs(t, "1.1.0", "")); err != nil {
		t.Fatal(err)
	}
	hostVeth := cniapi.HostVeth("c1", "eth0")
	want := []string{"create " + hostVeth + " eth0 mtu 1450", "configure eth0 10.244.0.7/32 via 169.254.1.1", "gso " + hostVeth + " 196608"}
	if !slices.Equal(wiring.calls, want) {
		t.Errorf("wiring calls %q, want %q", wiring.calls, want)
	}
}

func TestAddRepeatedRecreatesThePair(t *testing.T) {
	p, _, wiring, _ := newTestPlugin(t)
	args := cmdArgs(t, "1.1.0", "")
	for range 2 {
		if err := p.Funcs().Add(args); err != nil {
			t.Fatal(err)
		}
	}
	hostVeth := cniapi.HostVeth("c1", "eth0")
	want := []string{"create " + hostVeth + " eth0 mtu 1450", "configure eth0 10.244.0.7/32 via 169.254.1.1",
		"create " + hostVeth + " eth0 mtu 1450", "delete " + hostVeth, "create " + hostVeth + " eth0 mtu 1450",
		"configure eth0 10.244.0.7/32 via 169.254.1.1"}
	if !slices.Equal(wiring.calls, want) {
		t.Errorf("wiring calls\n %q\nwant\n %q", wiring.calls, want)
	}
}

func TestAddBadInput(t *testing.T) {
	p, _, wiring, _ := newTestPlugin(t)
	args := cmdArgs(t, "1.1.0", `,"mtu":70000`)
	wantCode(t, p.Funcs().Add(args), types.ErrInvalidNetworkConfig, "mtu: 70000: want 68 to 65535")
	args = cmdArgs(t, "1.1.0", "")
	args.Args = "garbage"
	wantCode(t, p.Funcs().Add(args), types.ErrInvalidEnvironmentVariables, "CNI_ARGS")
	if len(wiring.calls) != 0 {
		t.Errorf("wiring touched: %q", wiring.calls)
	}
}

func TestDel(t *testing.T) {
	t.Run("agent up", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		args := cmdArgs(t, "1.1.0", "")
		// The release before the veth: the agent's route sync must not
		// meet a route whose device is gone.
		agent.onDel = func() {
			if len(wiring.calls) != len(agent.calls)-1 {
				t.Errorf("the veth was deleted before the release: wiring %q, agent %q", wiring.calls, agent.calls)
			}
		}
		for range 2 {
			if err := p.Funcs().Del(args); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(agent.calls, []string{"del c1/eth0", "del c1/eth0"}) || len(wiring.calls) != 2 {
			t.Errorf("agent %q wiring %q", agent.calls, wiring.calls)
		}
		if q, _ := cniapi.ReadQueued(queueDirOf(t, args)); len(q) != 0 {
			t.Errorf("queued %+v with the agent up", q)
		}
	})
	t.Run("agent down: queued", func(t *testing.T) {
		p, agent, _, _ := newTestPlugin(t)
		agent.delErr = fmt.Errorf("%w at /run/x: connection refused", cniapi.ErrAgentUnreachable)
		args := cmdArgs(t, "1.1.0", "")
		if err := p.Funcs().Del(args); err != nil {
			t.Fatal(err)
		}
		q, err := cniapi.ReadQueued(queueDirOf(t, args))
		if err != nil || len(q) != 1 || q[0].Attachment != (cniapi.Attachment{ContainerID: "c1", IfName: "eth0"}) {
			t.Errorf("queue %+v, %v", q, err)
		}
	})
	t.Run("agent down and the queue unwritable", func(t *testing.T) {
		p, agent, _, _ := newTestPlugin(t)
		agent.delErr = cniapi.ErrAgentUnreachable
		args := cmdArgs(t, "1.1.0", "")
		args.StdinData = bytes.Replace(args.StdinData, []byte(`"queueDir":"`), []byte(`"queueDir":"/dev/null`), 1)
		wantCode(t, p.Funcs().Del(args), types.ErrTryAgainLater, "queuing the release failed")
	})
	t.Run("agent error is not queued", func(t *testing.T) {
		p, agent, _, _ := newTestPlugin(t)
		agent.delErr = &cniapi.Error{Code: cniapi.CodeInternal, Message: "store is down"}
		args := cmdArgs(t, "1.1.0", "")
		wantCode(t, p.Funcs().Del(args), cniapi.CodeInternal, "store is down")
		if q, _ := cniapi.ReadQueued(queueDirOf(t, args)); len(q) != 0 {
			t.Errorf("queued %+v", q)
		}
	})
	t.Run("wiring error still releases", func(t *testing.T) {
		p, agent, wiring, _ := newTestPlugin(t)
		wiring.deleteErr = errors.New("netlink timeout")
		wantCode(t, p.Funcs().Del(cmdArgs(t, "1.1.0", "")), types.ErrInternal, "netlink timeout")
		if !slices.Equal(agent.calls, []string{"del c1/eth0"}) {
			t.Errorf("agent calls %q", agent.calls)
		}
	})
}

func TestStatus(t *testing.T) {
	p, agent, _, _ := newTestPlugin(t)
	args := cmdArgs(t, "1.1.0", "")
	if err := p.Funcs().Status(args); err != nil {
		t.Fatal(err)
	}
	agent.status = cniapi.StatusResponse{Ready: false, Reason: "no block for this host yet"}
	wantCode(t, p.Funcs().Status(args), types.ErrPluginNotAvailable, "no block for this host yet")
	agent.statErr = fmt.Errorf("%w: connection refused", cniapi.ErrAgentUnreachable)
	wantCode(t, p.Funcs().Status(args), types.ErrPluginNotAvailable, "connection refused")
}

func TestGC(t *testing.T) {
	p, agent, _, _ := newTestPlugin(t)
	args := cmdArgs(t, "1.1.0", `,"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}]`)
	if err := p.Funcs().GC(args); err != nil {
		t.Fatal(err)
	}
	want := []cniapi.Attachment{{ContainerID: "c1", IfName: "eth0"}, {ContainerID: "c2", IfName: "net1"}}
	if !slices.Equal(agent.gcReq.Valid, want) {
		t.Errorf("gc valid %+v, want %+v", agent.gcReq.Valid, want)
	}
	// No list: none is valid, and the agent gets an empty list, not null.
	if err := p.Funcs().GC(cmdArgs(t, "1.1.0", "")); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(agent.gcReq); string(b) != `{"valid":[]}` {
		t.Errorf("gc request %s", b)
	}
}

func TestCheck(t *testing.T) {
	addr := netip.MustParsePrefix("10.244.0.7/32")
	hostVeth := cniapi.HostVeth("c1", "eth0")
	good := linux.PodState{
		HostVeth: true, HostVethIsVeth: true, HostUp: true, HostMTU: 1450,
		PodLink: true, PodUp: true, PodMTU: 1450, PodIndex: 2,
		Addrs: []netip.Prefix{addr},
		Routes: []linux.PodRoute{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: cniapi.GatewayV4},
			{Dst: netip.MustParsePrefix("169.254.1.1/32")},
		},
	}
	held := cniapi.CheckResponse{Network: "blue", Addr: addr, Gateway: cniapi.GatewayV4, HostVeth: hostVeth, Netns: "/run/netns/pod1"}
	prev := `,"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.244.0.7/32","gateway":"169.254.1.1","interface":1}]}`
	for _, tt := range []struct {
		name  string
		mod   func(*linux.PodState, *cniapi.CheckResponse)
		extra string
		want  []string
	}{
		{"good", func(*linux.PodState, *cniapi.CheckResponse) {}, "", nil},
		{"good with prevResult", func(*linux.PodState, *cniapi.CheckResponse) {}, prev, nil},
		{"prevResult differs", func(_ *linux.PodState, h *cniapi.CheckResponse) { h.Addr = netip.MustParsePrefix("10.244.0.8/32") },
			prev, []string{"prevResult has addresses [10.244.0.7/32], the agent holds 10.244.0.8/32", "eth0 has addresses [10.244.0.7/32], want 10.244.0.8/32"}},
		{"no host veth", func(s *linux.PodState, _ *cniapi.CheckResponse) { s.HostVeth = false }, "", []string{"host veth " + hostVeth + " does not exist"}},
		{"host down, wrong MTU", func(s *linux.PodState, _ *cniapi.CheckResponse) { s.HostUp = false; s.HostMTU = 1500 }, "",
			[]string{"host veth " + hostVeth + " is down", "host veth " + hostVeth + " has MTU 1500, want 1450"}},
		{"no pod link", func(s *linux.PodState, _ *cniapi.CheckResponse) { s.PodLink = false }, "", []string{"eth0 does not exist in /run/netns/pod1"}},
		{"no default route", func(s *linux.PodState, _ *cniapi.CheckResponse) { s.Routes = s.Routes[1:] }, "", []string{"no route 0.0.0.0/0 via 169.254.1.1 dev eth0"}},
		{"no gateway route", func(s *linux.PodState, _ *cniapi.CheckResponse) { s.Routes = s.Routes[:1] }, "", []string{"no route 169.254.1.1/32 dev eth0"}},
		{"agent routes elsewhere", func(_ *linux.PodState, h *cniapi.CheckResponse) { h.HostVeth = "trnother"; h.Netns = "/run/netns/x" }, "",
			[]string{"the agent routes the pod to trnother", "the agent holds the attachment for netns /run/netns/x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, agent, wiring, _ := newTestPlugin(t)
			wiring.state, agent.check = good, held
			wiring.state.Addrs = slices.Clone(good.Addrs)
			wiring.state.Routes = slices.Clone(good.Routes)
			tt.mod(&wiring.state, &agent.check)
			err := p.Funcs().Check(cmdArgs(t, "1.1.0", tt.extra))
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tt.want {
				wantCode(t, err, types.ErrInternal, w)
			}
			if n := strings.Count(err.Error(), ";") + 1; n != len(tt.want) {
				t.Errorf("%d problems reported, want %d: %v", n, len(tt.want), err)
			}
		})
	}
}

// An error result carries the CNI spec's cniVersion: the configuration's,
// or the newest supported when none was read.
func TestPrintError(t *testing.T) {
	p, _, _, out := newTestPlugin(t)
	err := p.Funcs().Add(cmdArgs(t, "1.0.0", `,"mtu":70000`))
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("ADD with a bad MTU: %v", err)
	}
	if err := p.PrintError(te); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("error result %q: %v", out, err)
	}
	if got["cniVersion"] != "1.0.0" || got["code"] != float64(types.ErrInvalidNetworkConfig) || !strings.Contains(fmt.Sprint(got["msg"]), "mtu") {
		t.Errorf("error result %s: want cniVersion 1.0.0, code 7 and the message", out)
	}

	fresh, _, _, out := newTestPlugin(t)
	if err := fresh.PrintError(types.NewError(types.ErrDecodingFailure, "not JSON", "")); err != nil {
		t.Fatal(err)
	}
	var res ErrorResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.CNIVersion != "1.1.0" || res.Code != types.ErrDecodingFailure {
		t.Errorf("error result before a configuration was read: %s %v; want cniVersion 1.1.0", out, err)
	}
}

// terrane-cni itself prints error results with cniVersion (skel's
// PluginMainFuncs leaves it out).
func TestPluginBinaryErrorResult(t *testing.T) {
	bin := filepath.Join(testbin.Terrane(t), "terrane-cni")
	for _, tc := range []struct {
		stdin, version string
		code           uint
	}{
		{`{"cniVersion":"1.0.0","name":"terrane","type":"terrane-cni","mtu":70000}`, "1.0.0", types.ErrInvalidNetworkConfig},
		{`not json`, "1.1.0", types.ErrDecodingFailure},
	} {
		cmd := exec.Command(bin)
		cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_NETNS=/run/netns/none", "CNI_IFNAME=eth0", "CNI_PATH=/nonexistent"}
		cmd.Stdin = strings.NewReader(tc.stdin)
		out, err := cmd.Output()
		if err == nil {
			t.Fatalf("ADD %s succeeded: %s", tc.stdin, out)
		}
		var res ErrorResult
		if jerr := json.Unmarshal(out, &res); jerr != nil || res.CNIVersion != tc.version || res.Code != tc.code || res.Msg == "" {
			t.Errorf("ADD %s: error result %s (%v); want cniVersion %s, code %d and a message", tc.stdin, out, jerr, tc.version, tc.code)
		}
	}
}
