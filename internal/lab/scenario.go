package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/manifest"
	"github.com/terrane-net/terrane/internal/topology"
)

// Limits keep a scenario to what one machine builds in seconds.
const (
	MaxScenarioSize = 1 << 20
	maxSegments     = 32
	maxRouters      = 32
	maxHosts        = 64
	maxPods         = 256
	// maxSegmentName keeps "s-<segment>", the router's interface on the
	// segment, within the kernel's 15 characters.
	maxSegmentName = 12
)

// Scenario is a checked lab description: every address parsed, every
// reference resolved, host addresses filled in.
type Scenario struct {
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	// TopologyFile is the topology's path as the scenario wrote it
	// (relative to the scenario's directory); empty when inline.
	TopologyFile string `json:"topologyFile,omitempty"`
	// Topology is the topology file's text (read from TopologyFile by
	// LoadScenario).
	Topology string    `json:"topology"`
	Segments []Segment `json:"segments"`
	Routers  []Router  `json:"routers,omitempty"`
	Hosts    []Host    `json:"hosts"`
	Pods     []Pod     `json:"pods,omitempty"`
	// Namespaces are created with their labels (--k8s).
	Namespaces []ScenarioNamespace `json:"namespaces,omitempty"`
	// Policies are NetworkPolicy and ClusterNetworkPolicy objects, as in a
	// manifest, applied through the API before the pods start (--k8s).
	Policies []json.RawMessage `json:"policies,omitempty"`

	badIP []int // hosts whose ip did not parse: not filled in
}

// Segment is one L2 segment: a bridge with hosts on it and, optionally, a
// rack router that is the hosts' default gateway.
type Segment struct {
	Name   string       `json:"name"`
	Subnet netip.Prefix `json:"subnet"`
	Router string       `json:"router,omitempty"`
	// Gateway is the router's address on the segment (valid only with
	// Router); the first usable address unless the scenario says.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// Subnet6, when set, makes the segment dual-stack: every host on it
	// also gets an IPv6 address there (Host.IP6), which its agent
	// registers (--ip6) and its peers route IPv6 blocks via.
	Subnet6 netip.Prefix `json:"subnet6,omitzero"`
}

// Router is a rack router: one interface per segment that names it, one on
// the spine.
type Router struct {
	Name string `json:"name"`
	// Spine is the router's address on the spine, with the spine's length.
	Spine netip.Prefix `json:"spine"`
	// BGP, when set, makes the router a BGP router: it runs BIRD, peers
	// with the hosts of its segments and with every other router over the
	// spine, and carries only what BGP taught it (no static routes).
	BGP *RouterBGP `json:"bgp,omitempty"`
	// VPC, when set, makes the router the cloud's VPC router: the only
	// router, with no spine, whose table is the fake EC2 route table the
	// server's VPC reconciler writes (vpc.go).
	VPC *RouterVPC `json:"vpc,omitempty"`
}

// RouterVPC is a VPC router's route table.
type RouterVPC struct {
	// RouteTable is the table's ID at the fake EC2 (rtb-…).
	RouteTable string `json:"routeTable"`
	// Budget is the most routes of Terrane's the table may hold: the
	// server's --vpc-config budget and the fake's route limit.
	Budget int `json:"budget"`
}

// Defaults of a VPC router.
const (
	DefaultRouteTable = "rtb-lab"
	DefaultVPCBudget  = 50
	maxVPCBudget      = 1000
	// InstanceLabel is the host label holding its instance ID; hosts
	// behind a VPC router get "i-<host>" unless they set it.
	InstanceLabel = "terrane.io/instance-id"
)

var routeTableRe = regexp.MustCompile(`^rtb-[0-9a-zA-Z]+$`)

// VPCRouter is the scenario's VPC router, if it has one.
func (s *Scenario) VPCRouter() (Router, bool) {
	i := slices.IndexFunc(s.Routers, func(r Router) bool { return r.VPC != nil })
	if i < 0 {
		return Router{}, false
	}
	return s.Routers[i], true
}

// RouterBGP is a BGP router's own settings.
type RouterBGP struct {
	// ASN is the router's autonomous system, unique among the routers:
	// the racks peer by eBGP over the spine.
	ASN uint32 `json:"asn"`
	// Daemon is the routing suite the router runs: DaemonBIRD (BIRD 2,
	// the default) or DaemonFRR (FRRouting's zebra and bgpd). Routers of
	// both kinds peer with each other over the spine.
	Daemon string `json:"daemon"`
}

// The routing suites a BGP router may run.
const (
	DaemonBIRD = "bird"
	DaemonFRR  = "frr"
)

// StaticRouters reports whether the scenario's routers carry static
// routes from fabricd (they neither run BGP nor play the VPC).
func (s *Scenario) StaticRouters() bool {
	_, vpc := s.VPCRouter()
	return len(s.Routers) > 0 && !s.BGPRouters() && !vpc
}

// BGPRouters reports whether the scenario's routers run BGP (validation
// makes it all of them or none, a VPC router beside them being the VPC's
// BGP gateway).
func (s *Scenario) BGPRouters() bool {
	return slices.ContainsFunc(s.Routers, func(r Router) bool { return r.BGP != nil })
}

// Host is a machine on a segment; its labels place it in topology groups.
type Host struct {
	Name    string     `json:"name"`
	Segment string     `json:"segment"`
	IP      netip.Addr `json:"ip"`
	// IP6 is the host's address on a dual-stack segment: the segment's
	// subnet6 with the host's offset in the IPv4 subnet as its last bits
	// (192.168.10.11/24 on fd00:ff:10::/64 is fd00:ff:10::b).
	IP6    netip.Addr        `json:"ip6,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Pod is a pod created on a host through the CNI plugin.
type Pod struct {
	Name        string            `json:"name"`
	Host        string            `json:"host"`
	Namespace   string            `json:"namespace"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Labels are the Pod's labels, which policies select (--k8s).
	Labels map[string]string `json:"labels,omitempty"`
	// Ports are the ports the pod serves: its container ports (named
	// ports for policy); lab probe --port answers on them.
	Ports []PodPort `json:"ports,omitempty"`
}

// PodPort is one port a pod serves.
type PodPort struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// ScenarioNamespace is a namespace with its labels, which namespace
// selectors match.
type ScenarioNamespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Segment returns the segment named name.
func (s *Scenario) Segment(name string) (Segment, bool) {
	i := slices.IndexFunc(s.Segments, func(g Segment) bool { return g.Name == name })
	if i < 0 {
		return Segment{}, false
	}
	return s.Segments[i], true
}

// Host returns the host named name.
func (s *Scenario) Host(name string) (Host, bool) {
	i := slices.IndexFunc(s.Hosts, func(h Host) bool { return h.Name == name })
	if i < 0 {
		return Host{}, false
	}
	return s.Hosts[i], true
}

// Router returns the router named name.
func (s *Scenario) Router(name string) (Router, bool) {
	i := slices.IndexFunc(s.Routers, func(r Router) bool { return r.Name == name })
	if i < 0 {
		return Router{}, false
	}
	return s.Routers[i], true
}

// RouterOf is the router of host's segment, if it has one.
func (s *Scenario) RouterOf(host string) (Router, bool) {
	h, ok := s.Host(host)
	if !ok {
		return Router{}, false
	}
	seg, _ := s.Segment(h.Segment)
	return s.Router(seg.Router)
}

// nodeNameRe: names become parts of namespace names and CNI container IDs.
var nodeNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

var namespaceRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

const nodeNameRule = "lowercase letters, digits and '-', at most 32 characters, starting and ending with a letter or digit"

// ParseScenario reads a scenario (YAML or JSON) and checks it whole,
// reporting every problem as a *fielderr.ValidationError whose paths name
// the fields as the file spells them ("hosts[2].segment"). The topology is
// kept as written: inline text in Topology, or a path in TopologyFile for
// LoadScenario to read.
func ParseScenario(data []byte) (*Scenario, error) {
	if len(data) > MaxScenarioSize {
		return nil, invalid(fielderr.FieldError{Msg: fmt.Sprintf("the file is %d bytes; a scenario is at most %d", len(data), MaxScenarioSize)})
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, invalid(fielderr.FieldError{Msg: "not valid YAML: " + err.Error()})
	}
	var doc any
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, invalid(fielderr.FieldError{Msg: "not valid YAML: " + err.Error()})
	}
	d := &shapeDecoder{}
	sc, raw := d.scenario(doc)
	if len(d.errs) > 0 {
		return nil, invalid(d.errs...) // shape errors hide the rest
	}
	errs := sc.parseAddresses(raw)
	if errs = append(errs, sc.check()...); len(errs) > 0 {
		return nil, invalid(errs...)
	}
	return sc, nil
}

func invalid(errs ...fielderr.FieldError) error {
	return &fielderr.ValidationError{Subject: "lab scenario", Errors: errs}
}

// shapeDecoder turns the decoded document into a Scenario, collecting
// every unknown field and wrong type with its path.
type shapeDecoder struct {
	errs []fielderr.FieldError
}

func (d *shapeDecoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "empty (null)"
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case json.Number:
		return "the number " + v.String()
	case string:
		return fmt.Sprintf("the string %q", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// object checks that v is a mapping holding only the known fields.
func (d *shapeDecoder) object(path string, v any, known ...string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		what := path
		if what == "" {
			what = "the file"
		}
		d.fail(path, "%s is %s; want a mapping with the fields %s", what, describe(v), strings.Join(known, ", "))
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			d.fail(join(path, k), "unknown field; known fields here: %s", strings.Join(known, ", "))
		}
	}
	return m
}

func (d *shapeDecoder) str(path string, v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number, bool:
		d.fail(path, "is %s; want a string (quote it: \"%v\")", describe(v), v)
	default:
		d.fail(path, "is %s; want a string", describe(v))
	}
	return ""
}

func (d *shapeDecoder) list(path string, v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	d.fail(path, "is %s; want a list", describe(v))
	return nil
}

func (d *shapeDecoder) strMap(path string, v any) map[string]string {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(path, "is %s; want a mapping of strings to strings", describe(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out[k] = d.str(path+"."+k, m[k])
	}
	return out
}

// raw holds the textual fields the meaning pass parses.
type rawScenario struct {
	topology string
	segments []rawSegment
	routers  []rawRouter
	hosts    []rawHost
}

type rawSegment struct{ subnet, gateway, subnet6 string }
type rawRouter struct {
	spine  string
	asn    any // bgp.asn as decoded: a json.Number, or nil
	budget any // vpc.budget as decoded
}
type rawHost struct{ ip string }

func (d *shapeDecoder) scenario(doc any) (*Scenario, rawScenario) {
	sc := &Scenario{}
	m := d.object("", doc, "name", "description", "topology", "segments", "routers", "hosts", "pods", "namespaces", "policies")
	if m == nil {
		return sc, rawScenario{}
	}
	sc.Name = d.str("name", m["name"])
	sc.Description = d.str("description", m["description"])
	topo := d.str("topology", m["topology"])
	if strings.Contains(topo, "\n") {
		sc.Topology = topo
	} else {
		sc.TopologyFile = topo
	}
	raw := rawScenario{topology: topo}
	for i, v := range d.list("segments", m["segments"]) {
		p := fmt.Sprintf("segments[%d]", i)
		sm := d.object(p, v, "name", "subnet", "subnet6", "router", "gateway")
		sc.Segments = append(sc.Segments, Segment{Name: d.str(p+".name", sm["name"]), Router: d.str(p+".router", sm["router"])})
		raw.segments = append(raw.segments, rawSegment{subnet: d.str(p+".subnet", sm["subnet"]), gateway: d.str(p+".gateway", sm["gateway"]), subnet6: d.str(p+".subnet6", sm["subnet6"])})
	}
	for i, v := range d.list("routers", m["routers"]) {
		p := fmt.Sprintf("routers[%d]", i)
		rm := d.object(p, v, "name", "spine", "bgp", "vpc")
		r := Router{Name: d.str(p+".name", rm["name"])}
		rr := rawRouter{spine: d.str(p+".spine", rm["spine"])}
		if bv, ok := rm["bgp"]; ok {
			r.BGP = &RouterBGP{}
			if bm := d.object(p+".bgp", bv, "asn", "daemon"); bm != nil {
				r.BGP.Daemon = d.str(p+".bgp.daemon", bm["daemon"])
				rr.asn = bm["asn"]
				if _, isNum := rr.asn.(json.Number); !isNum && rr.asn != nil {
					d.fail(p+".bgp.asn", "is %s; want a number (the router's ASN, e.g. 65001)", describe(rr.asn))
				}
			}
		}
		if vv, ok := rm["vpc"]; ok {
			r.VPC = &RouterVPC{}
			if vm := d.object(p+".vpc", vv, "routeTable", "budget"); vm != nil {
				r.VPC.RouteTable = d.str(p+".vpc.routeTable", vm["routeTable"])
				rr.budget = vm["budget"]
				if _, isNum := rr.budget.(json.Number); !isNum && rr.budget != nil {
					d.fail(p+".vpc.budget", "is %s; want a number of routes (1 to %d)", describe(rr.budget), maxVPCBudget)
				}
			}
		}
		sc.Routers = append(sc.Routers, r)
		raw.routers = append(raw.routers, rr)
	}
	for i, v := range d.list("hosts", m["hosts"]) {
		p := fmt.Sprintf("hosts[%d]", i)
		hm := d.object(p, v, "name", "segment", "ip", "labels")
		sc.Hosts = append(sc.Hosts, Host{Name: d.str(p+".name", hm["name"]), Segment: d.str(p+".segment", hm["segment"]), Labels: d.strMap(p+".labels", hm["labels"])})
		raw.hosts = append(raw.hosts, rawHost{ip: d.str(p+".ip", hm["ip"])})
	}
	for i, v := range d.list("pods", m["pods"]) {
		p := fmt.Sprintf("pods[%d]", i)
		pm := d.object(p, v, "name", "host", "namespace", "annotations", "labels", "ports")
		pod := Pod{Name: d.str(p+".name", pm["name"]), Host: d.str(p+".host", pm["host"]),
			Namespace: d.str(p+".namespace", pm["namespace"]), Annotations: d.strMap(p+".annotations", pm["annotations"]),
			Labels: d.strMap(p+".labels", pm["labels"])}
		for j, pv := range d.list(p+".ports", pm["ports"]) {
			pp := fmt.Sprintf("%s.ports[%d]", p, j)
			ppm := d.object(pp, pv, "name", "port", "protocol")
			port := PodPort{Name: d.str(pp+".name", ppm["name"]), Protocol: d.str(pp+".protocol", ppm["protocol"])}
			if num, ok := ppm["port"].(json.Number); ok {
				if n, err := num.Int64(); err == nil && n >= -1<<20 && n <= 1<<20 {
					port.Port = int(n) // its range is checked with the meaning
				} else {
					d.fail(pp+".port", "is %s; a port is 1 to 65535", num)
				}
			} else {
				d.fail(pp+".port", "is %s; want a port number", describe(ppm["port"]))
			}
			pod.Ports = append(pod.Ports, port)
		}
		sc.Pods = append(sc.Pods, pod)
	}
	for i, v := range d.list("namespaces", m["namespaces"]) {
		p := fmt.Sprintf("namespaces[%d]", i)
		nm := d.object(p, v, "name", "labels")
		sc.Namespaces = append(sc.Namespaces, ScenarioNamespace{Name: d.str(p+".name", nm["name"]), Labels: d.strMap(p+".labels", nm["labels"])})
	}
	for i, v := range d.list("policies", m["policies"]) {
		b, err := json.Marshal(v)
		if err != nil {
			d.fail(fmt.Sprintf("policies[%d]", i), "%v", err)
			continue
		}
		sc.Policies = append(sc.Policies, b)
	}
	return sc, raw
}

// parseAddresses parses the textual addresses into sc.
func (sc *Scenario) parseAddresses(raw rawScenario) []fielderr.FieldError {
	var errs []fielderr.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	for i, r := range raw.segments {
		p := fmt.Sprintf("segments[%d]", i)
		switch pfx, err := netip.ParsePrefix(r.subnet); {
		case r.subnet == "":
			add(p+".subnet", "required: the segment's IPv4 subnet, e.g. 192.168.10.0/24")
		case err != nil:
			add(p+".subnet", "%q is not a CIDR; write it like 192.168.10.0/24", r.subnet)
		case !pfx.Addr().Is4():
			add(p+".subnet", "%s is not IPv4; the lab's underlay is IPv4 (pods' networks may be anything the topology says)", pfx)
		case pfx != pfx.Masked():
			add(p+".subnet", "%q has host bits set; did you mean %s?", r.subnet, pfx.Masked())
		case pfx.Bits() > 29:
			add(p+".subnet", "%s is too small; use /29 or larger (room for a router and hosts)", pfx)
		default:
			sc.Segments[i].Subnet = pfx
		}
		if r.subnet6 != "" {
			switch pfx, err := netip.ParsePrefix(r.subnet6); {
			case err != nil:
				add(p+".subnet6", "%q is not a CIDR; write it like fd00:ff:10::/64", r.subnet6)
			case !pfx.Addr().Is6() || pfx.Addr().Is4In6():
				add(p+".subnet6", "%s is not IPv6; subnet6 is the segment's IPv6 subnet, e.g. fd00:ff:10::/64", pfx)
			case pfx != pfx.Masked():
				add(p+".subnet6", "%q has host bits set; did you mean %s?", r.subnet6, pfx.Masked())
			case pfx.Bits() > 96:
				add(p+".subnet6", "%s is too small; use /96 or larger (the hosts' IPv4 offsets go in its last 32 bits)", pfx)
			case sc.Segments[i].Router != "":
				add(p+".subnet6", "a dual-stack segment has no router in the lab yet (routers forward IPv4 only); remove router or subnet6")
			default:
				sc.Segments[i].Subnet6 = pfx
			}
		}
		if r.gateway != "" {
			a, err := netip.ParseAddr(r.gateway)
			if err != nil || !a.Is4() {
				add(p+".gateway", "%q is not an IPv4 address", r.gateway)
			} else {
				sc.Segments[i].Gateway = a
			}
		}
	}
	for i, r := range raw.routers {
		p := fmt.Sprintf("routers[%d].spine", i)
		if v := sc.Routers[i].VPC; v != nil {
			sc.parseVPC(i, r, add)
			if r.spine == "" {
				continue // needed only beside BGP routers: checkVPCRouter
			}
		}
		switch pfx, err := netip.ParsePrefix(r.spine); {
		case r.spine == "":
			add(p, "required: the router's address on the spine with the spine's length, e.g. 10.255.0.1/24")
		case err != nil:
			add(p, "%q is not an address with a prefix length; write it like 10.255.0.1/24", r.spine)
		case !pfx.Addr().Is4():
			add(p, "%s is not IPv4", pfx)
		case pfx.Bits() > 30:
			add(p, "%s: the spine needs /30 or larger", pfx)
		default:
			sc.Routers[i].Spine = pfx
		}
		if sc.Routers[i].BGP != nil {
			p := fmt.Sprintf("routers[%d].bgp.asn", i)
			switch n, _ := r.asn.(json.Number); {
			case r.asn == nil:
				add(p, "required: the router's ASN, e.g. 65001 (unique among the routers)")
			default:
				asn, err := strconv.ParseUint(n.String(), 10, 32)
				switch {
				case err != nil || asn == 0:
					add(p, "%s is not an ASN; use 1 to 4294967295 (private: 64512-65534, 4200000000-4294967294)", n)
				case asn == asTrans:
					add(p, "23456 is AS_TRANS, reserved for 2-byte speakers; pick another ASN")
				default:
					sc.Routers[i].BGP.ASN = uint32(asn)
				}
			}
		}
	}
	for i, r := range raw.hosts {
		if r.ip == "" {
			continue // filled in by check
		}
		a, err := netip.ParseAddr(r.ip)
		if err != nil || !a.Is4() {
			sc.badIP = append(sc.badIP, i)
			errs = append(errs, fielderr.FieldError{Path: fmt.Sprintf("hosts[%d].ip", i), Msg: fmt.Sprintf("%q is not an IPv4 address (or leave ip out to take the next free one)", r.ip)})
			continue
		}
		sc.Hosts[i].IP = a
	}
	if raw.topology == "" {
		add("topology", "required: a topology file's path (relative to the scenario) or its text inline (topology: |)")
	}
	return errs
}

// names checks a list of names: valid and unique.
func checkNames(kind string, names []string, add func(path, format string, args ...any)) map[string]int {
	idx := map[string]int{}
	for i, n := range names {
		p := fmt.Sprintf("%s[%d].name", kind, i)
		switch j, dup := idx[n]; {
		case n == "":
			add(p, "required")
		case !nodeNameRe.MatchString(n):
			add(p, "%q: use %s", n, nodeNameRule)
		case dup:
			add(p, "%q is already defined at %s[%d]", n, kind, j)
		default:
			idx[n] = i
		}
	}
	return idx
}

// check validates the meaning of a shape-valid scenario and fills in the
// defaults (gateways, host addresses, pod namespaces).
func (sc *Scenario) check() []fielderr.FieldError {
	var errs []fielderr.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case len(sc.Segments) == 0:
		add("segments", "required: at least one segment")
	case len(sc.Segments) > maxSegments:
		add("segments", "%d segments; the lab builds at most %d", len(sc.Segments), maxSegments)
	}
	if len(sc.Routers) > maxRouters {
		add("routers", "%d routers; the lab builds at most %d", len(sc.Routers), maxRouters)
	}
	switch {
	case len(sc.Hosts) == 0:
		add("hosts", "required: at least one host")
	case len(sc.Hosts) > maxHosts:
		add("hosts", "%d hosts; the lab builds at most %d", len(sc.Hosts), maxHosts)
	}
	if len(sc.Pods) > maxPods {
		add("pods", "%d pods; the lab builds at most %d", len(sc.Pods), maxPods)
	}

	segIdx := checkNames("segments", names(sc.Segments, func(s Segment) string { return s.Name }), add)
	rtrIdx := checkNames("routers", names(sc.Routers, func(r Router) string { return r.Name }), add)
	hostIdx := checkNames("hosts", names(sc.Hosts, func(h Host) string { return h.Name }), add)
	checkNames("pods", names(sc.Pods, func(p Pod) string { return p.Name }), add)
	for i, s := range sc.Segments {
		if len(s.Name) > maxSegmentName {
			add(fmt.Sprintf("segments[%d].name", i), "%q is longer than %d characters (it names the router's interface s-%s)", s.Name, maxSegmentName, s.Name)
		}
	}
	// Hosts and routers share the namespace terrane-lab-<lab>-<node>.
	reserved := func(path, n string) {
		if n == "fabric" || strings.HasPrefix(n, "pod-") || strings.HasPrefix(n, "vm-") {
			add(path, "%q is reserved (the lab's fabric namespace is \"fabric\", pods' are \"pod-*\", VMs' \"vm-*\"); pick another name", n)
		}
	}
	for i, r := range sc.Routers {
		reserved(fmt.Sprintf("routers[%d].name", i), r.Name)
		if j, ok := hostIdx[r.Name]; ok && r.Name != "" {
			add(fmt.Sprintf("routers[%d].name", i), "%q is also hosts[%d]'s name; hosts and routers need distinct names", r.Name, j)
		}
	}
	for i, h := range sc.Hosts {
		reserved(fmt.Sprintf("hosts[%d].name", i), h.Name)
	}

	// Segments: disjoint subnets, routers that exist, gateways inside.
	routerOf := map[string]bool{}
	for i, s := range sc.Segments {
		p := fmt.Sprintf("segments[%d]", i)
		if !s.Subnet.IsValid() {
			continue
		}
		for j := range i {
			if o := sc.Segments[j].Subnet; o.IsValid() && o.Overlaps(s.Subnet) {
				add(p+".subnet", "%s overlaps segments[%d].subnet %s; segments need disjoint subnets", s.Subnet, j, o)
			}
		}
		if s.Router == "" {
			if s.Gateway.IsValid() {
				add(p+".gateway", "a gateway needs a router; name one in %s.router or drop the gateway", p)
			}
			continue
		}
		if _, ok := rtrIdx[s.Router]; !ok {
			add(p+".router", "unknown router %q; defined routers: %s", s.Router, list(names(sc.Routers, func(r Router) string { return r.Name })))
		}
		routerOf[s.Router] = true
		if !s.Gateway.IsValid() {
			sc.Segments[i].Gateway = s.Subnet.Addr().Next()
		} else if !usable(s.Subnet, s.Gateway) {
			add(p+".gateway", "%s is not a usable address of %s", s.Gateway, s.Subnet)
		}
	}
	// Routers: one spine subnet, distinct addresses, away from segments.
	for i, r := range sc.Routers {
		p := fmt.Sprintf("routers[%d].spine", i)
		if !r.Spine.IsValid() {
			continue
		}
		if !usable(r.Spine.Masked(), r.Spine.Addr()) {
			add(p, "%s is not a usable address of %s", r.Spine.Addr(), r.Spine.Masked())
		}
		if i > 0 && sc.Routers[0].Spine.IsValid() && r.Spine.Masked() != sc.Routers[0].Spine.Masked() {
			add(p, "%s is not on the spine %s of routers[0]; all routers share one spine subnet", r.Spine, sc.Routers[0].Spine.Masked())
		}
		for j := range i {
			if sc.Routers[j].Spine.Addr() == r.Spine.Addr() {
				add(p, "%s is already routers[%d]'s address", r.Spine.Addr(), j)
			}
		}
		for j, s := range sc.Segments {
			if s.Subnet.IsValid() && s.Subnet.Overlaps(r.Spine.Masked()) {
				add(p, "the spine %s overlaps segments[%d].subnet %s", r.Spine.Masked(), j, s.Subnet)
			}
		}
		if !routerOf[r.Name] && r.Name != "" {
			add(fmt.Sprintf("routers[%d]", i), "router %q serves no segment; name it in a segment's router field or remove it", r.Name)
		}
	}
	sc.checkBGPRouters(add)
	sc.checkVPCRouter(add)
	// Hosts: on a segment, addresses inside it and distinct.
	taken := map[netip.Addr]string{}
	for _, s := range sc.Segments {
		if s.Gateway.IsValid() {
			taken[s.Gateway] = "the router's gateway address"
		}
	}
	for i, h := range sc.Hosts {
		if h.IP.IsValid() {
			if prev, ok := taken[h.IP]; ok {
				add(fmt.Sprintf("hosts[%d].ip", i), "%s is already %s", h.IP, prev)
			}
			taken[h.IP] = fmt.Sprintf("hosts[%d]'s address", i)
		}
	}
	for i, h := range sc.Hosts {
		p := fmt.Sprintf("hosts[%d]", i)
		j, ok := segIdx[h.Segment]
		if !ok {
			if h.Segment == "" {
				add(p+".segment", "required: the segment the host sits on; defined segments: %s", list(names(sc.Segments, func(s Segment) string { return s.Name })))
			} else {
				add(p+".segment", "unknown segment %q; defined segments: %s", h.Segment, list(names(sc.Segments, func(s Segment) string { return s.Name })))
			}
			continue
		}
		subnet := sc.Segments[j].Subnet
		if !subnet.IsValid() {
			continue
		}
		if slices.Contains(sc.badIP, i) {
			continue
		}
		if !h.IP.IsValid() {
			a, ok := nextFree(subnet, taken)
			if !ok {
				add(p+".ip", "segment %q (%s) has no free address left", h.Segment, subnet)
				continue
			}
			sc.Hosts[i].IP = a
			taken[a] = fmt.Sprintf("hosts[%d]'s address", i)
		} else if !usable(subnet, h.IP) {
			add(p+".ip", "%s is not a usable address of segment %q (%s)", h.IP, h.Segment, subnet)
		}
		if s6 := sc.Segments[j].Subnet6; s6.IsValid() && subnet.Contains(sc.Hosts[i].IP) {
			sc.Hosts[i].IP6 = ip6Of(s6, subnet, sc.Hosts[i].IP)
		}
		for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
			if !topology.ValidLabelKey(k) {
				add(p+".labels."+k, "not a valid label key ([prefix/]name, at most 63 characters)")
			} else if !topology.ValidLabelValue(h.Labels[k]) {
				add(p+".labels."+k, "%q is not a valid label value (at most 63 letters, digits, '-', '_', '.')", h.Labels[k])
			}
		}
	}
	// Pods: on a host, in a namespace.
	for i, pod := range sc.Pods {
		p := fmt.Sprintf("pods[%d]", i)
		if _, ok := hostIdx[pod.Host]; !ok {
			what := "unknown host " + fmt.Sprintf("%q", pod.Host)
			if pod.Host == "" {
				what = "required: the host the pod runs on"
			}
			add(p+".host", "%s; defined hosts: %s", what, list(names(sc.Hosts, func(h Host) string { return h.Name })))
		}
		if pod.Namespace == "" {
			sc.Pods[i].Namespace = "default"
		} else if !namespaceRe.MatchString(pod.Namespace) {
			add(p+".namespace", "%q is not a Kubernetes namespace name (lowercase letters, digits, '-')", pod.Namespace)
		}
		for _, k := range slices.Sorted(maps.Keys(pod.Annotations)) {
			if !topology.ValidLabelKey(k) {
				add(p+".annotations."+k, "not a valid annotation key ([prefix/]name)")
			}
		}
		for _, k := range slices.Sorted(maps.Keys(pod.Labels)) {
			if !topology.ValidLabelKey(k) {
				add(p+".labels."+k, "not a valid label key ([prefix/]name)")
			}
		}
		for j, port := range pod.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", p, j)
			if port.Port < 1 || port.Port > 65535 {
				add(pp+".port", "is %d; a port is 1 to 65535", port.Port)
			}
			switch port.Protocol {
			case "":
				sc.Pods[i].Ports[j].Protocol = "TCP"
			case "TCP", "UDP":
			default:
				add(pp+".protocol", "%q: a lab pod serves TCP or UDP", port.Protocol)
			}
		}
	}
	errs = append(errs, sc.checkPolicies()...)
	return errs
}

// parseVPC fills in routers[i].vpc.
func (sc *Scenario) parseVPC(i int, r rawRouter, add func(path, format string, args ...any)) {
	v := sc.Routers[i].VPC
	p := fmt.Sprintf("routers[%d].vpc", i)
	switch {
	case v.RouteTable == "":
		v.RouteTable = DefaultRouteTable
	case !routeTableRe.MatchString(v.RouteTable):
		add(p+".routeTable", "%q is not a route table ID; write it like rtb-0a1", v.RouteTable)
	}
	v.Budget = DefaultVPCBudget
	if n, ok := r.budget.(json.Number); ok {
		b, err := strconv.Atoi(n.String())
		if err != nil || b < 1 || b > maxVPCBudget {
			add(p+".budget", "%s: want a whole number of routes from 1 to %d (AWS's default quota is 50)", n, maxVPCBudget)
		} else {
			v.Budget = b
		}
	}
}

// checkVPCRouter: a scenario has at most one VPC router, and its hosts
// carry their instance IDs. Alone, the VPC router is the one L3 hop
// between the zones: no spine, no BGP. Beside it every other router runs
// BGP (a hybrid: racks behind ToRs and zones behind the VPC), and the VPC
// router is also the VPC's gateway to them: on the spine, speaking eBGP
// (BIRD) with every ToR, as a virtual private gateway does over Direct
// Connect.
func (sc *Scenario) checkVPCRouter(add func(path, format string, args ...any)) {
	vr, ok := sc.VPCRouter()
	if !ok {
		return
	}
	vi := slices.IndexFunc(sc.Routers, func(r Router) bool { return r.Name == vr.Name })
	for i, r := range sc.Routers {
		switch {
		case i == vi:
		case r.VPC != nil:
			add(fmt.Sprintf("routers[%d].vpc", i), "router %q: the scenario already has a vpc router (%s); one VPC route table routes all the zones", r.Name, vr.Name)
		case r.BGP == nil:
			add(fmt.Sprintf("routers[%d]", i), "router %q: beside a vpc router (%s) every other router runs BGP (a rack's ToR, which learns the zones from the VPC's gateway); give it bgp: {asn: N}, or let the VPC route between all the segments",
				r.Name, vr.Name)
		}
	}
	p := fmt.Sprintf("routers[%d]", vi)
	if len(sc.Routers) == 1 {
		if vr.Spine.IsValid() {
			add(p+".spine", "a vpc router alone has no spine (it is the scenario's only router); remove it")
		}
		if vr.BGP != nil {
			add(p+".bgp", "a vpc router alone speaks no BGP (only as the VPC's gateway beside BGP routers); remove bgp or vpc")
		}
	} else {
		if !vr.Spine.IsValid() {
			add(p+".spine", "required beside BGP routers: the vpc router is the VPC's gateway to them on the spine; give it an address there, e.g. %s", spineExample(sc))
		}
		switch {
		case vr.BGP == nil:
			add(p+".bgp", "required beside BGP routers: the VPC's gateway announces the zones to the ToRs over eBGP and learns the racks; give it bgp: {asn: N} with an ASN of its own")
		case vr.BGP.RunsFRR():
			add(p+".bgp.daemon", "the VPC's gateway runs BIRD (it learns the VPC table from the kernel); remove daemon: frr")
		}
	}
	for i, h := range sc.Hosts {
		if r, ok := sc.RouterOf(h.Name); !ok || r.VPC == nil {
			continue
		}
		if _, set := h.Labels[InstanceLabel]; !set {
			labels := maps.Clone(h.Labels)
			if labels == nil {
				labels = map[string]string{}
			}
			labels[InstanceLabel] = "i-" + h.Name
			sc.Hosts[i].Labels = labels
		}
	}
}

// spineExample is an address on the scenario's spine for an error
// message: the next after the routers' own.
func spineExample(sc *Scenario) string {
	for _, r := range sc.Routers {
		if r.Spine.IsValid() {
			a := r.Spine.Addr()
			for _, o := range sc.Routers {
				if o.Spine.IsValid() && o.Spine.Addr().Compare(a) > 0 {
					a = o.Spine.Addr()
				}
			}
			return netip.PrefixFrom(a.Next(), r.Spine.Bits()).String()
		}
	}
	return "10.255.0.1/24"
}

// asTrans is the ASN 2-byte speakers see in place of a 4-byte one (RFC 6793).
const asTrans = 23456

// checkBGPRouters: every router or none runs BGP (a static router would
// need static routes to the BGP racks, which is what BGP replaces), and
// each has its own ASN (the racks peer by eBGP over the spine).
func (sc *Scenario) checkBGPRouters(add func(path, format string, args ...any)) {
	first := slices.IndexFunc(sc.Routers, func(r Router) bool { return r.BGP != nil && r.VPC == nil })
	if first < 0 {
		return
	}
	asns := map[uint32]int{}
	for i, r := range sc.Routers {
		if r.BGP == nil {
			if r.VPC != nil {
				continue // reported by checkVPCRouter
			}
			add(fmt.Sprintf("routers[%d].bgp", i), "required: routers[%d] (%s) runs BGP, so every router does (give this one bgp: {asn: N}, or remove bgp from all)", first, sc.Routers[first].Name)
			continue
		}
		switch r.BGP.Daemon {
		case "":
			sc.Routers[i].BGP.Daemon = DaemonBIRD
		case DaemonBIRD, DaemonFRR:
		default:
			add(fmt.Sprintf("routers[%d].bgp.daemon", i), "%q: a lab router runs %s (BIRD 2, the default) or %s (FRRouting)", r.BGP.Daemon, DaemonBIRD, DaemonFRR)
		}
		if r.BGP.ASN == 0 {
			continue // reported by parseAddresses
		}
		if j, dup := asns[r.BGP.ASN]; dup {
			add(fmt.Sprintf("routers[%d].bgp.asn", i), "%d is already routers[%d]'s ASN; each router needs its own (the racks peer by eBGP over the spine)", r.BGP.ASN, j)
			continue
		}
		asns[r.BGP.ASN] = i
	}
}

// CheckTopology cross-checks a scenario against its compiled topology: the
// lab routes IPv4 only, every host joins a leaf group in every network, and
// every network a pod asks for exists and admits the pod's namespace.
func (sc *Scenario) CheckTopology(t *topology.Topology) error {
	var errs []fielderr.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	nets := map[string]*topology.Network{}
	for _, n := range t.Networks {
		nets[n.Name] = n
		if !n.CIDR.Addr().Is4() {
			for j, s := range sc.Segments {
				if !s.Subnet6.IsValid() {
					add(fmt.Sprintf("segments[%d].subnet6", j), "network %q is IPv6 (%s): every segment needs an IPv6 subnet too (subnet6: fd00:ff:10::/64), a dual-stack underlay its hosts route IPv6 blocks over", n.Name, n.CIDR)
				}
			}
		}
		for _, u := range sc.underlay() {
			if u.IsValid() && u.Overlaps(n.CIDR) {
				add("topology", "network %q (%s) overlaps the lab's own subnet %s (a segment or the spine); move one of them", n.Name, n.CIDR, u)
			}
		}
	}
	for i, h := range sc.Hosts {
		for _, n := range t.Networks {
			if !admitted(n.Tree, h) {
				add(fmt.Sprintf("hosts[%d].labels", i), "no leaf group of network %q admits host %q (labels %s); give it labels that one of %s selects",
					n.Name, h.Name, labelString(h.Labels), leafSelectors(n.Tree))
			}
		}
	}
	for i, p := range sc.Pods {
		value, ok := p.Annotations[NetworkAnnotation]
		if !ok {
			continue
		}
		path := fmt.Sprintf("pods[%d].annotations.%s", i, NetworkAnnotation)
		chosen := strings.Split(value, ",") // one network, or a dual-stack pair
		if len(chosen) > 2 {
			add(path, "%q: name one network, or two separated by a comma (one IPv4, one IPv6)", value)
			continue
		}
		var fams []bool
		for _, name := range chosen {
			n := nets[strings.TrimSpace(name)]
			if n == nil {
				add(path, "unknown network %q; the topology defines %s",
					name, list(names(t.Networks, func(n *topology.Network) string { return n.Name })))
				continue
			}
			if !n.Allows(p.Namespace) {
				add(fmt.Sprintf("pods[%d].namespace", i), "network %q does not admit namespace %q (it serves %s)", name, p.Namespace, list(n.Namespaces))
			}
			fams = append(fams, n.CIDR.Addr().Is4())
		}
		if len(fams) == 2 && fams[0] == fams[1] {
			add(path, "%q names two networks of one family; a dual-stack pod takes one IPv4 and one IPv6 network", value)
		}
	}
	sc.checkBGPTopology(t, add)
	sc.checkVPCTopology(t, add)
	if len(errs) > 0 {
		return invalid(errs...)
	}
	return nil
}

// NetworkAnnotation is the pod annotation that picks a network (the value
// of cniapi.NetworkAnnotation, kept here to keep this file free of the
// agent's API).
const NetworkAnnotation = "terrane.io/network"

func admitted(tr *topology.Tree, h Host) bool { return leafOf(tr, h) != nil }

// leafOf is the leaf group that admits h (named in it, or selected with
// every ancestor), or nil.
func leafOf(tr *topology.Tree, h Host) *topology.Group {
	for _, g := range tr.Leaves {
		for _, sh := range g.Hosts {
			if sh.Name == h.Name {
				return g
			}
		}
		ok := g.Selector.Matches(h.Labels)
		for _, a := range g.Ancestors() {
			ok = ok && a.Selector.Matches(h.Labels)
		}
		if ok {
			return g
		}
	}
	return nil
}

func leafSelectors(tr *topology.Tree) string {
	var out []string
	for _, g := range tr.Leaves {
		sel := g.Selector.String()
		for _, a := range g.Ancestors() {
			if s := a.Selector.String(); s != "" {
				sel = s + "," + sel
			}
		}
		if sel == "" {
			sel = "any host"
		}
		out = append(out, g.Path+" ("+strings.Trim(sel, ",")+")")
	}
	return strings.Join(out, ", ")
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

func names[T any](xs []T, name func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return out
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// usable reports whether a is a host address of subnet (not the network or
// broadcast address).
func usable(subnet netip.Prefix, a netip.Addr) bool {
	if !subnet.Contains(a) || a == subnet.Addr() {
		return false
	}
	return a != lastAddr(subnet)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func nextFree(subnet netip.Prefix, taken map[netip.Addr]string) (netip.Addr, bool) {
	for a := subnet.Addr().Next(); usable(subnet, a); a = a.Next() {
		if _, ok := taken[a]; !ok {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// checkPolicies checks the namespaces and the policies as the API server
// would (policy.Cluster.Validate), with the scenario's paths.
func (sc *Scenario) checkPolicies() []fielderr.FieldError {
	var errs []fielderr.FieldError
	c := &policy.Cluster{}
	for _, ns := range sc.Namespaces {
		c.Namespaces = append(c.Namespaces, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	for i, raw := range sc.Policies {
		p := fmt.Sprintf("policies[%d]", i)
		o, err := manifest.Decode(raw)
		var ve *fielderr.ValidationError
		switch {
		case errors.As(err, &ve):
			for _, fe := range ve.Errors {
				errs = append(errs, fielderr.FieldError{Path: p + "." + fe.Path, Msg: fe.Msg})
			}
		case err != nil:
			errs = append(errs, fielderr.FieldError{Path: p, Msg: err.Error()})
		default:
			sc.Policies[i] = o.Raw
		}
	}
	if err := c.Validate(); err != nil {
		var ve *fielderr.ValidationError
		if errors.As(err, &ve) {
			errs = append(errs, ve.Errors...)
		}
	}
	return errs
}

// ip6Of is ip's address on the IPv6 subnet s6: s6 with ip's offset in its
// IPv4 subnet as the last 32 bits.
func ip6Of(s6, subnet netip.Prefix, ip netip.Addr) netip.Addr {
	a, base := ip.As4(), subnet.Masked().Addr().As4()
	off := uint32(a[0]-base[0])<<24 | uint32(a[1]-base[1])<<16 | uint32(a[2]-base[2])<<8 | uint32(a[3]-base[3])
	b := s6.Addr().As16()
	b[12], b[13], b[14], b[15] = byte(off>>24), byte(off>>16), byte(off>>8), byte(off)
	return netip.AddrFrom16(b)
}
