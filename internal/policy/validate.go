package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/terrane-net/terrane/internal/fielderr"
)

// Validate checks a policy as the API server would, reporting every problem
// at its field's path ("spec.ingress[0].from[1].ipBlock.except[0]").
func (p *NetworkPolicy) Validate() error {
	// A first pass counts problems without building paths or messages;
	// only a policy that has some is checked again to name them.
	quiet := validator{quiet: true}
	quiet.networkPolicy(p)
	if quiet.problems == 0 {
		return nil
	}
	v := &validator{}
	v.networkPolicy(p)
	return v.err("NetworkPolicy " + p.Key())
}

func (v *validator) networkPolicy(p *NetworkPolicy) {
	if p.APIVersion != "" && p.APIVersion != "networking.k8s.io/v1" {
		v.add("apiVersion", "is %q; a NetworkPolicy is networking.k8s.io/v1", p.APIVersion)
	}
	if p.Kind != "" && p.Kind != "NetworkPolicy" {
		v.add("kind", "is %q; this takes NetworkPolicy", p.Kind)
	}
	v.dnsName("metadata.name", p.Metadata.Name, 253)
	v.dnsName("metadata.namespace", p.Metadata.Namespace, 63)
	v.selector("spec.podSelector", &p.Spec.PodSelector)
	var seenIngress, seenEgress bool
	for i, t := range p.Spec.PolicyTypes {
		switch {
		case t != Ingress && t != Egress:
			v.add(v.index("spec.policyTypes", "", i), "is %q; use Ingress or Egress", t)
		case t == Ingress && seenIngress, t == Egress && seenEgress:
			v.add(v.index("spec.policyTypes", "", i), "%s is listed twice", t)
		}
		seenIngress = seenIngress || t == Ingress
		seenEgress = seenEgress || t == Egress
	}
	for i, r := range p.Spec.Ingress {
		v.rule(v.index("spec.ingress", "", i), ".from", r.From, r.Ports)
	}
	for i, r := range p.Spec.Egress {
		v.rule(v.index("spec.egress", "", i), ".to", r.To, r.Ports)
	}
}

// Validate checks the whole input: every policy, and that namespaces and
// pods are named and pods' ports are sane.
func (c *Cluster) Validate() error {
	v := &validator{}
	for i := range c.Policies {
		if err := c.Policies[i].Validate(); err != nil {
			v.nested(fmt.Sprintf("policies[%d]", i), err)
		}
	}
	for i := range c.ClusterPolicies {
		if err := c.ClusterPolicies[i].Validate(); err != nil {
			v.nested(fmt.Sprintf("clusterPolicies[%d]", i), err)
		}
	}
	for i, ns := range c.Namespaces {
		v.dnsName(fmt.Sprintf("namespaces[%d].name", i), ns.Name, 63)
		v.labels(fmt.Sprintf("namespaces[%d].labels", i), ns.Labels)
	}
	for i, n := range c.Nodes {
		v.dnsName(fmt.Sprintf("nodes[%d].name", i), n.Name, 253)
		for j, a := range n.IPs {
			if !a.IsValid() || a.Zone() != "" {
				v.add(fmt.Sprintf("nodes[%d].ips[%d]", i, j), "is not an IP address")
			}
		}
	}
	for i := range c.Pods {
		p := &c.Pods[i]
		if podValid(p) {
			continue // the common case, without building paths
		}
		path := fmt.Sprintf("pods[%d]", i)
		v.dnsName(path+".namespace", p.Namespace, 63)
		v.dnsName(path+".name", p.Name, 253)
		v.labels(path+".labels", p.Labels)
		for j, a := range p.IPs {
			if !a.IsValid() || a.Zone() != "" {
				v.add(fmt.Sprintf("%s.ips[%d]", path, j), "is not an IP address")
			}
		}
		for j, cp := range p.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", path, j)
			if cp.Port < 1 || cp.Port > 65535 {
				v.add(pp+".containerPort", "is %d; a port is 1 to 65535", cp.Port)
			}
			v.protocol(pp+".protocol", cp.Proto())
			if cp.Name != "" {
				v.portName(pp+".name", cp.Name)
			}
		}
	}
	return v.err("policy input")
}

// podValid reports whether Cluster.Validate finds nothing wrong with p.
func podValid(p *Pod) bool {
	if !dnsNameValid(p.Namespace, 63) || !dnsNameValid(p.Name, 253) {
		return false
	}
	for _, a := range p.IPs {
		if !a.IsValid() || a.Zone() != "" {
			return false
		}
	}
	for k, val := range p.Labels {
		if !labelKeyValid(k) || len(val) > 63 || (val != "" && !isLabelText(val)) {
			return false
		}
	}
	for _, cp := range p.Ports {
		switch cp.Proto() {
		case TCP, UDP, SCTP:
		default:
			return false
		}
		if cp.Port < 1 || cp.Port > 65535 || cp.Name != "" && !portNameValid(cp.Name) {
			return false
		}
	}
	return true
}

type validator struct {
	errs []fielderr.FieldError
	// quiet counts problems without their paths or messages (index and key
	// build nothing).
	quiet    bool
	problems int
}

func (v *validator) add(path, format string, args ...any) {
	v.problems++
	if v.quiet {
		return
	}
	v.errs = append(v.errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) nested(prefix string, err error) {
	if ve, ok := err.(*fielderr.ValidationError); ok {
		for _, fe := range ve.Errors {
			v.errs = append(v.errs, fielderr.FieldError{Path: prefix + "." + fe.Path, Msg: fe.Msg})
		}
		return
	}
	v.add(prefix, "%v", err)
}

// index is the path of element i of field (".ports") under path.
func (v *validator) index(path, field string, i int) string {
	if v.quiet {
		return ""
	}
	return path + field + "[" + strconv.Itoa(i) + "]"
}

// key is the path of map entry k of field under path.
func (v *validator) key(path, field, k string) string {
	if v.quiet {
		return ""
	}
	return path + field + "[" + k + "]"
}

func (v *validator) err(subject string) error {
	if len(v.errs) == 0 {
		return nil
	}
	return &fielderr.ValidationError{Subject: subject, Errors: v.errs}
}

func (v *validator) rule(path, peerField string, peers []Peer, ports []Port) {
	for i, pr := range peers {
		pp := v.index(path, peerField, i)
		switch {
		case pr.PodSelector == nil && pr.NamespaceSelector == nil && pr.IPBlock == nil:
			v.add(pp, "names no peer; give podSelector, namespaceSelector or ipBlock")
		case pr.IPBlock != nil && (pr.PodSelector != nil || pr.NamespaceSelector != nil):
			v.add(pp, "ipBlock cannot be combined with podSelector or namespaceSelector; use two peers")
		}
		if pr.PodSelector != nil {
			v.selector(pp+".podSelector", pr.PodSelector)
		}
		if pr.NamespaceSelector != nil {
			v.selector(pp+".namespaceSelector", pr.NamespaceSelector)
		}
		if pr.IPBlock != nil {
			v.ipBlock(pp+".ipBlock", pr.IPBlock)
		}
	}
	for i, p := range ports {
		pp := v.index(path, ".ports", i)
		v.protocol(pp+".protocol", p.Proto())
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				v.add(pp+".endPort", "needs a numeric port to start the range")
			}
		case p.Port.String:
			v.portName(pp+".port", p.Port.Str)
			if p.EndPort != nil {
				v.add(pp+".endPort", "cannot follow a named port; give port a number")
			}
		default:
			if p.Port.Int < 1 || p.Port.Int > 65535 {
				v.add(pp+".port", "is %d; a port is 1 to 65535", p.Port.Int)
			}
			if p.EndPort != nil && (*p.EndPort < p.Port.Int || *p.EndPort > 65535) {
				v.add(pp+".endPort", "is %d; it must be from port (%d) to 65535", *p.EndPort, p.Port.Int)
			}
		}
	}
}

func (v *validator) protocol(path string, p Protocol) {
	switch p {
	case TCP, UDP, SCTP:
	default:
		v.add(path, "is %q; use TCP, UDP or SCTP", p)
	}
}

func (v *validator) ipBlock(path string, b *IPBlock) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		v.add(path+".cidr", "%q is not a CIDR (e.g. 10.0.0.0/8)", b.CIDR)
		return
	}
	if cidr.Masked() != cidr {
		v.add(path+".cidr", "%s has host bits set; write %s", cidr, cidr.Masked())
	}
	for i, e := range b.Except {
		ep := v.index(path, ".except", i)
		ex, err := netip.ParsePrefix(e)
		switch {
		case err != nil:
			v.add(ep, "%q is not a CIDR", e)
		case ex.Addr().Is4() != cidr.Addr().Is4():
			v.add(ep, "%s is not of the family of cidr %s", ex, cidr)
		case ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()):
			v.add(ep, "%s must lie strictly inside cidr %s", ex, cidr)
		}
	}
}

func (v *validator) selector(path string, s *Selector) {
	for k, val := range s.MatchLabels {
		v.labelKey(path+".matchLabels", k)
		v.labelValue(v.key(path, ".matchLabels", k), val)
	}
	for i, r := range s.MatchExpressions {
		rp := v.index(path, ".matchExpressions", i)
		v.labelKey(rp+".key", r.Key)
		switch r.Operator {
		case OpIn, OpNotIn:
			if len(r.Values) == 0 {
				v.add(rp+".values", "%s needs at least one value", r.Operator)
			}
			for j, val := range r.Values {
				v.labelValue(v.index(rp, ".values", j), val)
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) > 0 {
				v.add(rp+".values", "%s takes no values", r.Operator)
			}
		default:
			v.add(rp+".operator", "is %q; use In, NotIn, Exists or DoesNotExist", r.Operator)
		}
	}
}

// labels checks an object's labels, keys in order.
func (v *validator) labels(path string, l map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(l)) {
		v.labelKey(path, k)
		v.labelValue(path+"["+k+"]", l[k])
	}
}

// labelKeyValid is labelKey's verdict without its messages.
func labelKeyValid(k string) bool {
	prefix, name, has := strings.Cut(k, "/")
	if !has {
		name, prefix = prefix, ""
	}
	if has && (prefix == "" || len(prefix) > 253 || !isDNSSubdomain(prefix)) {
		return false
	}
	return name != "" && len(name) <= 63 && isLabelText(name)
}

// labelKey checks [prefix/]name: a DNS subdomain prefix and a name of at
// most 63 alphanumerics, '-', '_' and '.', alphanumeric at both ends.
func (v *validator) labelKey(path, k string) {
	prefix, name, has := strings.Cut(k, "/")
	if !has {
		name, prefix = prefix, ""
	}
	if has && (prefix == "" || len(prefix) > 253 || !isDNSSubdomain(prefix)) {
		v.add(path, "label key %q: the prefix must be a DNS subdomain", k)
	}
	if name == "" || len(name) > 63 || !isLabelText(name) {
		v.add(path, "label key %q: the name must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	}
}

func (v *validator) labelValue(path, val string) {
	if len(val) > 63 || (val != "" && !isLabelText(val)) {
		v.add(path, "label value %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", val)
	}
}

func (v *validator) dnsName(path, name string, max int) {
	if name == "" {
		v.add(path, "is required")
		return
	}
	if !dnsNameValid(name, max) {
		v.add(path, "%q must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most %d characters", name, max)
	}
}

func dnsNameValid(name string, max int) bool {
	return name != "" && len(name) <= max && isDNSSubdomain(name)
}

// portName checks an IANA service name: at most 15 lower-case letters,
// digits and '-', at least one letter, no leading, trailing or double '-'.
func (v *validator) portName(path, n string) {
	if !portNameValid(n) {
		v.add(path, "%q is not a port name: 1-15 lower-case letters, digits and '-', with a letter", n)
	}
}

func portNameValid(n string) bool {
	letter := false
	ok := n != "" && len(n) <= 15 && n[0] != '-' && n[len(n)-1] != '-' && !strings.Contains(n, "--")
	for _, c := range n {
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			ok = false
		}
	}
	return ok && letter
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLabelText(s string) bool {
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isDNSSubdomain(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" || len(part) > 63 {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			lowerAlnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
			if !lowerAlnum && (c != '-' || i == 0 || i == len(part)-1) {
				return false
			}
		}
	}
	return true
}

// Validate checks a cluster policy as its CRD's schema and rules would.
func (p *ClusterNetworkPolicy) Validate() error {
	v := &validator{}
	if p.APIVersion != "" && p.APIVersion != "policy.networking.k8s.io/v1beta1" && p.APIVersion != "policy.networking.k8s.io/v1alpha2" {
		v.add("apiVersion", "is %q; a ClusterNetworkPolicy is policy.networking.k8s.io/v1beta1", p.APIVersion)
	}
	if p.Kind != "" && p.Kind != "ClusterNetworkPolicy" {
		v.add("kind", "is %q; this takes ClusterNetworkPolicy", p.Kind)
	}
	v.dnsName("metadata.name", p.Metadata.Name, 253)
	s := &p.Spec
	if s.Tier != AdminTier && s.Tier != BaselineTier {
		v.add("spec.tier", "is %q; use Admin or Baseline", s.Tier)
	}
	if s.Priority < 0 || s.Priority > 1000 {
		v.add("spec.priority", "is %d; it must be 0 to 1000", s.Priority)
	}
	switch sub := s.Subject; {
	case (sub.Namespaces == nil) == (sub.Pods == nil):
		v.add("spec.subject", "give exactly one of namespaces and pods")
	case sub.Namespaces != nil:
		v.selector("spec.subject.namespaces", sub.Namespaces)
	default:
		v.selector("spec.subject.pods.namespaceSelector", &sub.Pods.NamespaceSelector)
		v.selector("spec.subject.pods.podSelector", &sub.Pods.PodSelector)
	}
	if len(s.Ingress) > 25 {
		v.add("spec.ingress", "has %d rules; at most 25", len(s.Ingress))
	}
	if len(s.Egress) > 25 {
		v.add("spec.egress", "has %d rules; at most 25", len(s.Egress))
	}
	for i, r := range s.Ingress {
		v.cnpRule(v.index("spec.ingress", "", i), r.Name, r.Action, "from", r.From, r.Protocols, false)
	}
	for i, r := range s.Egress {
		v.cnpRule(v.index("spec.egress", "", i), r.Name, r.Action, "to", r.To, r.Protocols, true)
	}
	return v.err("ClusterNetworkPolicy " + p.Metadata.Name)
}

func (v *validator) cnpRule(path, name string, action Action, peerField string, peers []CNPPeer, protos []CNPProtocol, egress bool) {
	if len(name) > 100 {
		v.add(path+".name", "has %d characters; at most 100", len(name))
	}
	switch action {
	case Accept, Deny, Pass:
	default:
		v.add(path+".action", "is %q; use Accept, Deny or Pass", action)
	}
	if len(peers) == 0 || len(peers) > 25 {
		v.add(path+"."+peerField, "has %d peers; give 1 to 25", len(peers))
	}
	addressPeer := false
	for i, pr := range peers {
		pp := fmt.Sprintf("%s.%s[%d]", path, peerField, i)
		n := 0
		if pr.Namespaces != nil {
			n++
			v.selector(pp+".namespaces", pr.Namespaces)
		}
		if pr.Pods != nil {
			n++
			v.selector(pp+".pods.namespaceSelector", &pr.Pods.NamespaceSelector)
			v.selector(pp+".pods.podSelector", &pr.Pods.PodSelector)
		}
		if pr.Nodes != nil {
			n++
			addressPeer = true
			if !egress {
				v.add(pp+".nodes", "is an egress peer only")
			}
			v.selector(pp+".nodes", pr.Nodes)
		}
		if pr.Networks != nil {
			n++
			addressPeer = true
			if !egress {
				v.add(pp+".networks", "is an egress peer only")
			}
			if len(pr.Networks) == 0 || len(pr.Networks) > 25 {
				v.add(pp+".networks", "has %d CIDRs; give 1 to 25", len(pr.Networks))
			}
			for j, c := range pr.Networks {
				cp := fmt.Sprintf("%s.networks[%d]", pp, j)
				pfx, err := netip.ParsePrefix(c)
				switch {
				case err != nil:
					v.add(cp, "%q is not a CIDR (e.g. 10.0.0.0/8)", c)
				case pfx.Masked() != pfx:
					v.add(cp, "%s has host bits set; write %s", pfx, pfx.Masked())
				}
			}
		}
		if pr.DomainNames != nil {
			n++
			v.add(pp+".domainNames", "domain name peers (experimental) are not supported by Terrane; use networks")
		}
		if n != 1 {
			v.add(pp, "sets %d peer kinds; give exactly one of namespaces, pods, nodes, networks", n)
		}
	}
	if len(protos) > 25 {
		v.add(path+".protocols", "has %d entries; at most 25", len(protos))
	}
	for i, p := range protos {
		pp := fmt.Sprintf("%s.protocols[%d]", path, i)
		n := 0
		for _, m := range []struct {
			name string
			pm   *CNPPortMatch
		}{{"tcp", p.TCP}, {"udp", p.UDP}, {"sctp", p.SCTP}} {
			if m.pm == nil {
				continue
			}
			n++
			if dp := m.pm.DestinationPort; dp != nil {
				dpp := pp + "." + m.name + ".destinationPort"
				switch {
				case (dp.Number != 0) == (dp.Range != nil):
					v.add(dpp, "give exactly one of number and range")
				case dp.Range != nil:
					if dp.Range.Start < 1 || dp.Range.End > 65535 || dp.Range.Start >= dp.Range.End {
						v.add(dpp+".range", "is %d-%d; start must be below end, both 1 to 65535", dp.Range.Start, dp.Range.End)
					}
				case dp.Number < 1 || dp.Number > 65535:
					v.add(dpp+".number", "is %d; a port is 1 to 65535", dp.Number)
				}
			}
		}
		if p.DestinationNamedPort != "" {
			n++
			v.portName(pp+".destinationNamedPort", p.DestinationNamedPort)
			if addressPeer {
				v.add(pp+".destinationNamedPort", "cannot be used with networks or nodes peers, which have no named ports")
			}
		}
		if n != 1 {
			v.add(pp, "sets %d matches; give exactly one of tcp, udp, sctp, destinationNamedPort", n)
		}
	}
}

// ValidName reports whether a pod and its namespace have names the API
// server accepts (what Cluster.Validate checks), so a source can leave out
// a workload that would make the whole input invalid.
func ValidName(namespace, name string) bool {
	return namespace != "" && len(namespace) <= 63 && isDNSSubdomain(namespace) &&
		name != "" && len(name) <= 253 && isDNSSubdomain(name)
}
