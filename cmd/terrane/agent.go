package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/bgp"
	"github.com/terrane-net/terrane/internal/bgp/gobgp"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/store/bolt"
	"github.com/terrane-net/terrane/internal/topology"
)

// DefaultTable is the routing table the agent owns (0xfa, like its route
// protocol) and DefaultRulePriority the rule that consults it: before main
// (32766), after local (0).
const (
	DefaultTable        = 250
	DefaultRulePriority = 100
)

type agentOptions struct {
	server, ca, cert, key, token string
	tokenFile                    string
	host, ip, ip6, labels        string
	socket, stateDir, queueDir   string
	metricsAddress               string
	table, rulePriority          int
	claimAhead                   int
	logLevel                     string
	ebpf                         bool
	bigTCP                       bool
	bigTCPSize                   int
	bigTCPAsked                  bool // --big-tcp given: a refusal is an error

	bgpPeers            []string
	bgpASN              uint32
	bgpKeepRoutesOnExit bool

	policy, kubeconfig string

	installCNI            bool
	cniConfDir, cniBinDir string
	cniPlugin, cniName    string
	mtu                   int
}

func newAgentCommand() *cobra.Command {
	o := &agentOptions{}
	hostname, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: register the host, hand pods addresses, program routes",
		Long: `The agent runs on every node (as root, in the node's network namespace). It
registers the host with the server (name, address, labels), claims address
blocks ahead of demand, and serves the terrane-cni plugin on a unix socket only
root can open: pod addresses come from blocks the host already owns, with no
control-plane write on the hot path; each allocation is kept in node-local
state (--state-dir) so a restart neither loses nor duplicates one.

It owns one routing table (--table, consulted by a policy rule at
--rule-priority) and keeps it equal to what the routing core computes: a route
to each local pod's veth, and each L2 peer's blocks via the peer's address. It
follows the server with a long poll, so a block claimed anywhere reaches the
table within a round trip; it changes only what differs and never flushes.

--server may list several servers of one control plane (on one store),
comma-separated: the agent calls the one that last answered and, when it gives
no answer (refused, reset, timed out, a proxy's 502/503/504), the next. It
counts itself offline only while no server answers.

BIG TCP is on by default: the largest GSO/GRO packet (as large as the uplink's
device takes, up to 512 KiB, or --big-tcp-size) is raised on the uplink and on
every pod veth pair, those the node has at start and those it wires later: the
same bytes cross each hop in fewer, larger packets, so the per-packet cost of
the routed path (two veths and two forwards) shrinks. Where the kernel (IPv4
BIG TCP needs Linux 6.3) or the uplink refuses it, the agent says so and runs
at 64 KiB. The uplink's sizes are put back when the agent stops.
--big-tcp=false leaves every size alone; --big-tcp given explicitly makes a
refusal an error.

--policy kubernetes enforces the cluster's NetworkPolicies and
ClusterNetworkPolicies (policy.networking.k8s.io) on this node's pods, in one
nftables table (inet terrane) it owns: a pod's rules are in place before its
CNI ADD returns, and the table stays when the agent exits. --policy server
enforces the same objects as the Terrane server holds them (terrane ctl
policy apply, terrane ctl label), for clusters without a Kubernetes API and
for VM ports.

--install-cni writes the CNI configuration and copies the plugin, then exits
(run it as an init step before the agent).`,
		Example: `  # on each node, as root
  terrane agent --server https://10.0.0.1:7443 --ca ca.crt --cert node-1.crt --key node-1.key \
    --host node-1 --ip 192.168.10.11 --labels rack=1
  # two servers on one store, no load balancer: fail over to the second
  terrane agent --server https://10.0.0.1:7443,https://10.0.0.2:7443 --ca ca.crt \
    --cert node-1.crt --key node-1.key --host node-1 --ip 192.168.10.11 --labels rack=1
  # once per node, before the agent: the conflist and the plugin binary
  terrane agent --install-cni --cni-conf-dir /etc/cni/net.d --cni-bin-dir /opt/cni/bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.installCNI {
				return o.install(cmd.OutOrStdout())
			}
			o.bigTCPAsked = cmd.Flags().Changed("big-tcp") && o.bigTCP
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", defaultServer, "the server's URL, or unix:///path.sock; several servers of one control plane comma-separated: each call goes to the one that last answered, and to the next when it does not answer (env "+envServer+")")
	f.StringVar(&o.ca, "ca", "", "CA certificate the server's certificate must chain to")
	f.StringVar(&o.cert, "cert", "", "the node's client certificate (`terrane ctl certs issue --role node --name HOST`)")
	f.StringVar(&o.key, "key", "", "the client certificate's key")
	f.StringVar(&o.token, "token", "", "bearer token of the node (env "+envToken+")")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token, read again as it rotates: in Kubernetes, a projected ServiceAccount token for audience terrane (the server verifies it with --kube-token-review)")
	f.StringVar(&o.host, "host", hostname, "this host's name (its node identity)")
	f.StringVar(&o.ip, "ip", "", "the address peers reach this host on (required)")
	f.StringVar(&o.ip6, "ip6", "", "the host's IPv6 address beside an IPv4 --ip (a dual-stack underlay): L2 peers route the IPv6 networks' blocks via it")
	f.StringVar(&o.labels, "labels", "", "the host's labels, which place it in the topology's groups: k=v,k2=v2")
	f.StringVar(&o.socket, "socket", cniapi.DefaultSocket, "unix socket the CNI plugin calls")
	f.StringVar(&o.metricsAddress, "metrics-address", "", "HOST:PORT to serve Prometheus metrics on at /metrics (e.g. 127.0.0.1:9611, or :9611 on every address for a Prometheus elsewhere); \"\": none — see docs/metrics.md")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/terrane/agent", "node-local state (the pods' addresses)")
	f.StringVar(&o.queueDir, "cni-queue-dir", cniapi.DefaultQueueDir, "releases the plugin queued while the agent was down")
	f.IntVar(&o.table, "table", DefaultTable, "routing table the agent owns")
	f.IntVar(&o.rulePriority, "rule-priority", DefaultRulePriority, "priority of the policy rule that consults --table")
	f.IntVar(&o.claimAhead, "claim-ahead", 0, "free addresses to keep per network before claiming another block (0: a quarter of a block); also how many pods the node can start while no server answers — raise it to ride out longer outages")
	f.StringArrayVar(&o.bgpPeers, "bgp-peer", nil, "ADDR:ASN of a BGP peer of this host ([ADDR]:ASN for IPv6); repeat for several; replaces the topology's peers (a topology peer with the same address lends its password and port)")
	f.Uint32Var(&o.bgpASN, "bgp-asn", 0, "this host's AS number, instead of its bgp group's")
	f.BoolVar(&o.bgpKeepRoutesOnExit, "bgp-keep-routes-on-exit", false, "on exit, close BGP sessions without a Cease so peers keep this host's routes for the graceful-restart time (a planned restart); default: withdraw them")
	f.BoolVar(&o.ebpf, "ebpf", false, "accelerate pod traffic with the eBPF fast path (TCX programs on the uplink and the pods' veths that skip the host's IP stack, IPv4); the routes stay the source of truth: without it, or once the agent exits, traffic goes through them")
	f.BoolVar(&o.bigTCP, "big-tcp", true, "BIG TCP: raise the GSO/GRO maximum of the uplink and of the pods' veths to --big-tcp-size (IPv4 and IPv6; Linux 6.3 or later); on by default where the kernel and uplink take it, put back when the agent stops; --big-tcp=false: off")
	f.IntVar(&o.bigTCPSize, "big-tcp-size", 0, "the BIG TCP GSO/GRO maximum in bytes (65536 to 524280), capped at the uplink's tso_max_size; 0: as large as the uplink takes (524280 at most)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.policy, "policy", "none", "enforce network policy in the nftables table inet terrane: none; kubernetes (NetworkPolicy and ClusterNetworkPolicy from the Kubernetes API); or server (the same objects from the Terrane server, for clusters without Kubernetes and VM ports: terrane ctl policy)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "with --policy kubernetes: the API's kubeconfig (\"\": the pod's ServiceAccount)")
	f.BoolVar(&o.installCNI, "install-cni", false, "write the CNI conflist and copy the plugin, then exit")
	f.StringVar(&o.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "with --install-cni: where the conflist goes")
	f.StringVar(&o.cniBinDir, "cni-bin-dir", "/opt/cni/bin", "with --install-cni: where the plugin goes")
	f.StringVar(&o.cniPlugin, "cni-plugin", "", "with --install-cni: the terrane-cni binary (default: next to this one, else on PATH)")
	f.StringVar(&o.cniName, "cni-network-name", "terrane", "with --install-cni: the conflist's network name")
	f.IntVar(&o.mtu, "mtu", 1500, "with --install-cni: the pods' MTU")
	return cmd
}

func (o *agentOptions) run(ctx context.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("host", o.host)
	if o.host == "" {
		return errors.New("--host: give this host's name")
	}
	ip, err := netip.ParseAddr(o.ip)
	if err != nil {
		return fmt.Errorf("--ip %q: give the address peers reach this host on (192.168.10.11)", o.ip)
	}
	var ip6 netip.Addr
	if o.ip6 != "" {
		if ip6, err = netip.ParseAddr(o.ip6); err != nil || !ip6.Is6() || ip6.Is4In6() {
			return fmt.Errorf("--ip6 %q: give the host's IPv6 address its peers reach it on (fd00:ff::11)", o.ip6)
		}
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	if o.metricsAddress != "" {
		if _, port, err := net.SplitHostPort(o.metricsAddress); err != nil || port == "" {
			return fmt.Errorf("--metrics-address %q: want HOST:PORT, e.g. 127.0.0.1:9611, or :9611 for every address", o.metricsAddress)
		}
	}
	bgpPeers, err := parseBGPPeers(o.bgpPeers)
	if err != nil {
		return err
	}
	gso := 0
	switch {
	case o.bigTCPSize != 0 && (o.bigTCPSize < linux.DefaultGSOSize || o.bigTCPSize > linux.MaxGSOSize):
		return fmt.Errorf("--big-tcp-size %d: want %d to %d bytes, or 0 for as large as the uplink takes", o.bigTCPSize, linux.DefaultGSOSize, linux.MaxGSOSize)
	case o.bigTCPSize != 0 && !o.bigTCP:
		return errors.New("--big-tcp-size: not with --big-tcp=false")
	case o.bigTCP && o.bigTCPSize == 0:
		gso = linux.MaxGSOSize // capped at the uplink's tso_max_size
	case o.bigTCP:
		gso = o.bigTCPSize
	}
	if o.token == "" && o.tokenFile == "" {
		o.token = os.Getenv(envToken)
	}
	serverFlag := "--server"
	if s := os.Getenv(envServer); s != "" && o.server == defaultServer {
		o.server, serverFlag = s, "$"+envServer
	}
	if _, err := client.SplitServers(o.server); err != nil {
		return fmt.Errorf("%s %q: %w", serverFlag, o.server, err)
	}
	c, err := client.New(client.Config{Server: o.server, CAFile: o.ca, CertFile: o.cert, KeyFile: o.key, Token: o.token, TokenFile: o.tokenFile})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	st, err := bolt.Open(filepath.Join(o.stateDir, "agent.db"), bolt.Options{})
	if err != nil {
		return fmt.Errorf("open the agent's state (is another agent running with --state-dir %s?): %w", o.stateDir, err)
	}
	defer st.Close()
	dp, err := linux.New(linux.Options{Table: o.table, Logger: log})
	if err != nil {
		return err
	}
	defer dp.Close()
	host, err := linux.OpenHost()
	if err != nil {
		return err
	}
	defer host.Close()
	var fast agent.FastPath
	if o.ebpf {
		fp, err := openFastPath(host, ip)
		if err != nil {
			return err
		}
		defer fp.Close()
		fast = fp
		log.Info("ebpf fast path attached")
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	polSrc, polTable, closePolicy, err := openPolicy(ctx, o.policy, o.kubeconfig, c, log)
	if err != nil {
		return err
	}
	defer closePolicy()
	var polStatus string
	if polSrc != nil {
		polStatus = filepath.Join(o.stateDir, "policy.json")
	}
	a, err := agent.New(ctx, agent.Config{Policy: polSrc, PolicyTable: polTable, PolicyStatusFile: polStatus, Host: o.host, IP: ip, IP6: ip6, Labels: labels, Server: c, Dataplane: dp, HostOps: host,
		State: st, Table: o.table, RulePriority: o.rulePriority, QueueDir: o.queueDir, ClaimAhead: o.claimAhead, Log: log,
		BGP: agent.BGPOptions{Peers: bgpPeers, ASN: o.bgpASN, KeepRoutesOnExit: o.bgpKeepRoutesOnExit, Start: startGoBGP}, FastPath: fast,
		GSOMaxSize: gso, BigTCPBestEffort: !o.bigTCPAsked, SetPodGSOMaxSize: setPodGSOMaxSize})
	if err != nil {
		return err
	}
	errc := make(chan error, 3)
	running := 2
	go func() { errc <- a.Serve(ctx, o.socket, nil) }()
	go func() { errc <- a.Run(ctx) }()
	if o.metricsAddress != "" {
		running++
		go func() { errc <- a.ServeMetrics(ctx, o.metricsAddress, nil) }()
	}
	err = <-errc
	stop()
	for range running - 1 {
		if err2 := <-errc; err == nil {
			err = err2
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// startGoBGP is the agent's BGP speaker: GoBGP, linked here and not by
// internal/agent.
func startGoBGP(ctx context.Context, cfg bgp.Config) (agent.BGPSpeaker, error) {
	return gobgp.Start(ctx, cfg)
}

// parseBGPPeers reads --bgp-peer ADDR:ASN values ([ADDR]:ASN for IPv6).
func parseBGPPeers(vals []string) ([]topology.BGPPeer, error) {
	var out []topology.BGPPeer
	seen := map[netip.Addr]bool{}
	for _, v := range vals {
		i := strings.LastIndexByte(v, ':')
		if i < 0 {
			return nil, fmt.Errorf("--bgp-peer %q: want ADDR:ASN, e.g. 192.168.1.1:65001", v)
		}
		addr, err := netip.ParseAddr(strings.Trim(v[:i], "[]"))
		if err != nil {
			return nil, fmt.Errorf("--bgp-peer %q: %q is not an IP address (want ADDR:ASN, e.g. 192.168.1.1:65001 or [fd00::1]:65001)", v, v[:i])
		}
		asn, err := strconv.ParseUint(v[i+1:], 10, 32)
		if err != nil || asn == 0 {
			return nil, fmt.Errorf("--bgp-peer %q: the AS number must be 1 to 4294967295", v)
		}
		if seen[addr.Unmap()] {
			return nil, fmt.Errorf("--bgp-peer %s is given twice", addr)
		}
		seen[addr.Unmap()] = true
		out = append(out, topology.BGPPeer{Address: addr.Unmap(), ASN: uint32(asn)})
	}
	return out, nil
}

// parseLabels reads k=v,k2=v2.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels %q: want key=value pairs separated by commas (rack=1,zone=a)", s)
		}
		out[k] = v
	}
	return out, nil
}

// conflist is the CNI configuration --install-cni writes.
func (o *agentOptions) conflist() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       o.cniName,
		"plugins": []any{map[string]any{
			"type":         "terrane-cni",
			"agentSocket":  o.socket,
			"queueDir":     o.queueDir,
			"mtu":          o.mtu,
			"capabilities": map[string]bool{cniapi.PodAnnotationsCapability: true},
		}},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// install writes the conflist and copies the plugin, each atomically (a
// runtime never reads half a file, and a running plugin is not changed
// under it).
func (o *agentOptions) install(out io.Writer) error {
	if o.mtu < 68 || o.mtu > 65535 {
		return fmt.Errorf("--mtu %d: want 68 to 65535", o.mtu)
	}
	src := o.cniPlugin
	if src == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "terrane-cni"); readable(p) {
				src = p
			}
		}
	}
	if src == "" {
		return errors.New("no terrane-cni binary next to this one: build it (go build -o bin/ ./cmd/terrane ./cmd/terrane-cni) or give --cni-plugin PATH")
	}
	plugin, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("--cni-plugin: %w", err)
	}
	conf, err := o.conflist()
	if err != nil {
		return err
	}
	files := map[string]struct {
		data []byte
		mode os.FileMode
	}{
		filepath.Join(o.cniConfDir, "10-"+o.cniName+".conflist"): {conf, 0o644},
		filepath.Join(o.cniBinDir, "terrane-cni"):                {plugin, 0o755},
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := files[name]
		if err := writeAtomic(name, f.data, f.mode); err != nil {
			return err
		}
		fmt.Fprintf(out, "installed %s\n", name)
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// setPodGSOMaxSize is the agent's SetPodGSOMaxSize: both ends of a pod's
// pair, the host end in this namespace.
func setPodGSOMaxSize(hostVeth, netns, ifName string, size int) error {
	return linux.SetPodGSOMaxSize(linux.PodVeth{HostName: hostVeth, PodNetns: netns, PodName: ifName}, size)
}
