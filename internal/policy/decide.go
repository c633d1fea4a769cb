package policy

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strings"

	"go4.org/netipx"
)

// Stages of a direction's decision, in the order they are tried.
const (
	tierHost = iota // the node's own addresses, on ingress
	tierAdmin
	tierNetworkPolicy
	tierBaseline
)

// box is addresses on a protocol class and a port range.
type box struct {
	proto       Protocol // TCP, UDP, SCTP or OtherProtocols
	first, last uint16
	peers       *addrSet
}

func allProtocols(peers *addrSet) []box {
	out := make([]box, 0, len(Protocols))
	for _, p := range Protocols {
		out = append(out, box{p, 0, 65535, peers})
	}
	return out
}

// stage is one rule of a tier (for the NetworkPolicy tier, the union of
// every selecting policy's rules): traffic in its boxes gets its action.
type stage struct {
	tier   int
	action Action
	boxes  []box
}

// direction compiles pod p's ingress or egress: the host's stage, then
// every Admin-tier rule of the cluster policies selecting p (by priority,
// then name, then rule order), the NetworkPolicy tier if a policy selects
// p, every Baseline-tier rule, and at the end accept.
func (ix *indexed) direction(p *Pod, t PolicyType) Direction {
	pols := ix.selecting(p, t)
	cnpsSel := ix.selectingCluster(p)
	if len(pols)+len(cnpsSel) == 0 {
		return Direction{}
	}
	key := ix.directionKey(p, t, pols, cnpsSel)
	if d, ok := ix.directions[key]; ok {
		return d
	}
	d := ix.compileDirection(p, t, pols)
	ix.directions[key] = d
	return d
}

// directionKey names what a direction's result depends on within one
// Compile: the direction, the policies selecting the pod and, on ingress,
// the pod's container ports.
func (ix *indexed) directionKey(p *Pod, t PolicyType, pols []*NetworkPolicy, cnps []*ClusterNetworkPolicy) string {
	var b strings.Builder
	b.WriteString(string(t))
	for _, np := range pols {
		b.WriteString("\x00np:")
		b.WriteString(np.Metadata.Namespace)
		b.WriteString("/")
		b.WriteString(np.Metadata.Name)
	}
	for _, cnp := range cnps {
		b.WriteString("\x00cnp:")
		b.WriteString(cnp.Metadata.Name)
	}
	if t == Ingress {
		var n []byte
		for _, cp := range p.Ports {
			n = append(append(append(n[:0], 0), cp.Name...), 0)
			n = append(append(n, cp.Proto()...), 0)
			n = binary.BigEndian.AppendUint32(n, uint32(cp.Port))
			b.Write(n)
		}
	}
	return b.String()
}

func (ix *indexed) compileDirection(p *Pod, t PolicyType, pols []*NetworkPolicy) Direction {
	admin, baseline, cnps := ix.clusterStages(p, t)
	if len(admin)+len(baseline)+len(pols) == 0 {
		return Direction{}
	}
	var stages []stage
	if t == Ingress && ix.host != nil {
		stages = append(stages, stage{tier: tierHost, action: Accept, boxes: allProtocols(ix.host)})
	}
	stages = append(stages, admin...)
	if len(pols) > 0 {
		stages = append(stages, stage{tier: tierNetworkPolicy, action: Accept, boxes: ix.networkPolicyBoxes(p, pols, t)})
	}
	stages = append(stages, baseline...)
	d := ix.cp.decide(stages)
	for _, np := range pols {
		d.Policies = append(d.Policies, np.Key())
	}
	d.ClusterPolicies = cnps
	return d
}

// networkPolicyBoxes is what the policies selecting p admit in direction t.
func (ix *indexed) networkPolicyBoxes(p *Pod, pols []*NetworkPolicy, t PolicyType) []box {
	var out []box
	add := func(ref ruleRef, ns string, peerList []Peer, ports []Port) {
		peers := ix.peers(ref, ns, peerList)
		if len(ports) == 0 {
			out = append(out, allProtocols(peers)...)
			return
		}
		for _, port := range ports {
			proto := port.Proto()
			if port.Port != nil && port.Port.String {
				out = append(out, ix.namedPortBoxes(p, t, peers, port.Port.Str, proto)...)
				continue
			}
			first, last := numericRange(port)
			out = append(out, box{proto, first, last, peers})
		}
	}
	for _, np := range pols {
		if t == Ingress {
			for i, r := range np.Spec.Ingress {
				add(ruleRef{np, t, i}, np.Metadata.Namespace, r.From, r.Ports)
			}
		} else {
			for i, r := range np.Spec.Egress {
				add(ruleRef{np, t, i}, np.Metadata.Namespace, r.To, r.Ports)
			}
		}
	}
	return out
}

// clusterStages are the Admin and Baseline stages of the cluster policies
// selecting p in direction t, and those policies' names.
func (ix *indexed) clusterStages(p *Pod, t PolicyType) (admin, baseline []stage, names []string) {
	for _, cnp := range ix.clusterPolicies {
		if !ix.subjectSelects(&cnp.Spec.Subject, p) {
			continue
		}
		var stages []stage
		tier := tierAdmin
		if cnp.Spec.Tier == BaselineTier {
			tier = tierBaseline
		}
		if t == Ingress {
			for i, r := range cnp.Spec.Ingress {
				stages = append(stages, stage{tier, r.Action, ix.clusterBoxes(p, t, ix.clusterPeers(ruleRef{cnp, t, i}, r.From), r.Protocols)})
			}
		} else {
			for i, r := range cnp.Spec.Egress {
				stages = append(stages, stage{tier, r.Action, ix.clusterBoxes(p, t, ix.clusterPeers(ruleRef{cnp, t, i}, r.To), r.Protocols)})
			}
		}
		if len(stages) == 0 {
			continue
		}
		names = append(names, cnp.Metadata.Name)
		if tier == tierAdmin {
			admin = append(admin, stages...)
		} else {
			baseline = append(baseline, stages...)
		}
	}
	return admin, baseline, names
}

func (ix *indexed) clusterBoxes(p *Pod, t PolicyType, peers *addrSet, protos []CNPProtocol) []box {
	if len(protos) == 0 {
		return allProtocols(peers)
	}
	var out []box
	for _, pm := range protos {
		if pm.DestinationNamedPort != "" {
			out = append(out, ix.namedPortBoxes(p, t, peers, pm.DestinationNamedPort, "")...)
			continue
		}
		for _, m := range []struct {
			proto Protocol
			pm    *CNPPortMatch
		}{{TCP, pm.TCP}, {UDP, pm.UDP}, {SCTP, pm.SCTP}} {
			switch {
			case m.pm == nil:
			case m.pm.DestinationPort == nil:
				out = append(out, box{m.proto, 0, 65535, peers})
			case m.pm.DestinationPort.Range != nil:
				r := m.pm.DestinationPort.Range
				out = append(out, box{m.proto, uint16(r.Start), uint16(r.End), peers})
			default:
				n := uint16(m.pm.DestinationPort.Number)
				out = append(out, box{m.proto, n, n, peers})
			}
		}
	}
	return out
}

// boxRef is box box of stage stage.
type boxRef struct{ stage, box int }

// decide cuts each protocol's port line at every boundary of every box,
// decides each piece for every address (first matching stage, tier by
// tier), and writes the accepted addresses in normal form: what every piece
// accepts in Any, the rest per piece, equal neighbours merged.
func decide(stages []stage) Direction {
	type piece struct {
		proto  Protocol
		lo, hi int
		acc    int // index into accs
	}
	var pieces []piece
	// A piece's decision depends only on which boxes cover it: pieces
	// (of any protocol) covered by the same boxes share one.
	var accs [][]netipx.IPRange
	memo := map[string]int{}
	var key []byte
	var bounds []int
	var boxes, cover, sorted []boxRef
	for _, proto := range Protocols {
		bounds = append(bounds[:0], 0, 65536)
		boxes = boxes[:0] // of proto, by first port
		for si, st := range stages {
			for bi, b := range st.boxes {
				if b.proto == proto {
					bounds = append(bounds, int(b.first), int(b.last)+1)
					boxes = append(boxes, boxRef{si, bi})
				}
			}
		}
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
		boxAt := func(r boxRef) *box { return &stages[r.stage].boxes[r.box] }
		slices.SortStableFunc(boxes, func(a, b boxRef) int { return cmp.Compare(boxAt(a).first, boxAt(b).first) })
		// Sweep the pieces in order: a box covers a piece when it starts
		// at or before it and ends at or after it (boxes never cut one).
		cover = cover[:0]
		next := 0
		for i := 0; i+1 < len(bounds); i++ {
			lo, hi := bounds[i], bounds[i+1]-1
			for ; next < len(boxes) && int(boxAt(boxes[next]).first) <= lo; next++ {
				cover = append(cover, boxes[next])
			}
			cover = slices.DeleteFunc(cover, func(r boxRef) bool { return int(boxAt(r).last) < lo })
			sorted = append(sorted[:0], cover...)
			slices.SortFunc(sorted, func(a, b boxRef) int { return cmp.Or(cmp.Compare(a.stage, b.stage), cmp.Compare(a.box, b.box)) })
			key = key[:0]
			for _, r := range sorted {
				key = binary.AppendUvarint(binary.AppendUvarint(key, uint64(r.stage)), uint64(r.box))
			}
			acc, ok := memo[string(key)]
			if !ok {
				acc = len(accs)
				accs = append(accs, decidePiece(stages, sorted))
				memo[string(key)] = acc
			}
			pieces = append(pieces, piece{proto, lo, hi, acc})
		}
	}
	// Pieces sharing a decision share its set: each distinct set is
	// intersected, and has Any taken out, once.
	every := universeRanges
	for _, acc := range accs {
		every = intersectRanges(every, acc)
	}
	every = slices.Clone(every)
	rest := make([][]netipx.IPRange, len(accs))
	for i, acc := range accs {
		rest[i] = slices.Clone(subtractRanges(acc, every))
	}
	d := Direction{Isolated: true, Any: every}
	for _, pc := range pieces {
		peers := rest[pc.acc]
		if len(peers) == 0 {
			continue
		}
		if n := len(d.Ports); n > 0 {
			prev := &d.Ports[n-1]
			if prev.Protocol == pc.proto && int(prev.Last)+1 == pc.lo && slices.Equal(prev.Peers, peers) {
				prev.Last = uint16(pc.hi)
				continue
			}
		}
		d.Ports = append(d.Ports, PortAllow{Protocol: pc.proto, First: uint16(pc.lo), Last: uint16(pc.hi), Peers: peers})
	}
	return d
}

// decidePiece is the set of addresses the stages accept on a piece of a
// protocol's port line covered by the boxes cover (sorted by stage).
func decidePiece(stages []stage, cover []boxRef) []netipx.IPRange {
	var final, acc, skip []netipx.IPRange
	tier := -1
	var parts [][]netipx.IPRange
	var ids []uint64
	for si, st := range stages {
		if st.tier != tier {
			skip = nil // Pass skips only the rest of its tier
			tier = st.tier
		}
		// Boxes of a stage often share their peers (a rule's ports, or
		// policies admitting the same peers on other ports): each set once.
		parts, ids = parts[:0], ids[:0]
		for ; len(cover) > 0 && cover[0].stage == si; cover = cover[1:] {
			if s := st.boxes[cover[0].box].peers; !slices.Contains(ids, s.id) {
				ids = append(ids, s.id)
				parts = append(parts, s.r)
			}
		}
		if st.tier == tierNetworkPolicy {
			// NetworkPolicy decides all it is asked: what it admits
			// passes, the rest is dropped — and no later stage decides
			// anything.
			acc = unionRanges(acc, subtractRanges(subtractRanges(unionRanges(parts...), final), skip))
			return acc
		}
		if len(parts) == 0 {
			continue
		}
		matched := subtractRanges(subtractRanges(unionRanges(parts...), final), skip)
		switch st.action {
		case Accept:
			acc = unionRanges(acc, matched)
			final = unionRanges(final, matched)
		case Deny:
			final = unionRanges(final, matched)
		case Pass:
			skip = unionRanges(skip, matched)
		}
	}
	// Nothing decided: the default, accept.
	return unionRanges(acc, subtractRanges(universeRanges, final))
}
