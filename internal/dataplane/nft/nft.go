//go:build linux

// Package nft enforces compiled policy (internal/policy rule sets) with
// nftables, through netlink (github.com/google/nftables; this package is its
// only importer). It owns one table, `inet terrane`, and never reads or
// changes another.
//
// Layout, for a node whose pod 10.1.0.2 (shop/front) is isolated both ways:
//
//	table inet terrane {
//	  map ingress4 { type ipv4_addr : verdict; elements = { 10.1.0.2 : jump in-shop/front } }
//	  map egress4  { type ipv4_addr : verdict; elements = { 10.1.0.2 : jump out-shop/front } }
//	  set in4-shop/front  { type ipv4_addr . inet_proto . inet_service; flags interval; ... }
//	  chain in-shop/front {
//	    ip saddr . meta l4proto . th dport @in4-shop/front return
//	    ip6 saddr . meta l4proto . th dport @in6-shop/front return
//	    counter drop
//	  }
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    ct state established,related accept
//	    ip saddr vmap @egress4; ip6 saddr vmap @egress6
//	    ip daddr vmap @ingress4; ip6 daddr vmap @ingress6 }
//	  chain input { type filter hook input priority filter; policy accept;
//	    ct state established,related accept
//	    ip saddr vmap @egress4; ip6 saddr vmap @egress6 }
//	}
//
// A packet costs one verdict-map lookup per direction and, for an isolated
// pod, one set lookup per family: the same whether one policy or ten
// thousand select the pod. A direction's `any` peers are elements spanning
// every protocol and port; its port entries are elements of one protocol and
// port range. A pod joining a selector is a set element added; nothing is
// rebuilt.
package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/terrane-net/terrane/internal/policy"
)

// TableName is the one table this package owns.
const TableName = "terrane"

// Table programs rule sets into the table of one network namespace.
type Table struct {
	conn  *nftables.Conn
	table *nftables.Table
	// applied is what the kernel holds, per pod key; nil before the first
	// Apply, which replaces the whole table.
	applied map[string]endpoint
	maps    map[string]*nftables.Set
}

// Open connects to nftables in the network namespace of the open file
// descriptor nsFD, or in the caller's when nsFD is negative. Nothing changes
// until the first Apply.
func Open(nsFD int) (*Table, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(largeBuffers)}
	if nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFD))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Table{conn: conn, table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}}, nil
}

// socketBuffer is the netlink socket's send and receive buffer. A
// transaction is one sendmsg, refused (EMSGSIZE) when larger than the send
// buffer: the default (net.core.wmem_default, 208 KiB) holds about 3,500
// set elements, and a pod admitting 10,000 (peer, port) pairs needs more.
// The kernel acknowledges every message of the transaction, each ack an
// skb charged to the receive buffer: the default overflows (ENOBUFS) past
// a few hundred messages, and a node's full sync sends thousands. 64 MiB
// each holds about a million elements and tens of thousands of acks; the
// kernel only uses what a transaction needs.
const socketBuffer = 64 << 20

// largeBuffers raises both buffers past net.core.wmem_max and rmem_max with
// SO_SNDBUFFORCE and SO_RCVBUFFORCE (CAP_NET_ADMIN, which programming
// nftables needs anyway), else as far as the maxima allow.
func largeBuffers(c *netlink.Conn) error {
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer))
		}); err == nil && serr == nil {
			return nil
		}
	}
	if err := errors.Join(c.SetWriteBuffer(socketBuffer), c.SetReadBuffer(socketBuffer)); err != nil {
		return fmt.Errorf("netlink socket buffers: %w", err)
	}
	return nil
}

// maxElemsPerMsg bounds the set elements of one netlink message: the
// message's element list is one attribute, whose length is 16 bits (an
// IPv6 interval element takes about 100 bytes).
const maxElemsPerMsg = 500

// endpoint is one pod as programmed: its addresses and, per isolated
// direction, its set elements by family.
type endpoint struct {
	addrs []netip.Addr
	dirs  [2]*direction // ingress, egress; nil: not isolated
}

type direction struct {
	elems [2][]element // IPv4, IPv6
}

// element is one interval of a set: key and key end, each address .
// protocol . port, padded to registers as the kernel stores them.
type element struct{ key, end string }

const (
	in = iota
	out
)

var dirNames = [2]string{"in", "out"}

// Apply makes the table enforce rs. The first call replaces the table
// whole, in one transaction; later calls change only what differs from the
// last successful Apply, also in one transaction. On error the kernel keeps
// what it had and the next Apply tries again from there.
func (t *Table) Apply(rs *policy.RuleSet) error {
	want := map[string]endpoint{}
	for _, ep := range rs.Endpoints {
		e := endpoint{addrs: slices.Clone(ep.IPs)}
		for i, d := range []policy.Direction{ep.Ingress, ep.Egress} {
			if d.Isolated {
				e.dirs[i] = compileDirection(d)
			}
		}
		want[ep.Pod] = e
	}
	full := t.applied == nil
	var err error
	if full {
		err = t.replace(want)
	} else {
		err = t.update(want)
	}
	if err != nil {
		if full {
			t.maps = nil
		}
		return err
	}
	t.applied = want
	return nil
}

// Remove deletes the table: every pod is open again.
func (t *Table) Remove() error {
	t.conn.AddTable(t.table)
	t.conn.DelTable(t.table)
	t.applied, t.maps = nil, nil
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table inet %s: %w", TableName, err)
	}
	return nil
}

// Close releases the netlink connection; the table stays.
func (t *Table) Close() error { return t.conn.CloseLasting() }

func (t *Table) replace(want map[string]endpoint) error {
	c := t.conn
	// add + delete + add: the table is replaced whether or not it existed.
	c.AddTable(t.table)
	c.DelTable(t.table)
	c.AddTable(t.table)
	t.maps = map[string]*nftables.Set{}
	for _, name := range []string{"ingress4", "ingress6", "egress4", "egress6"} {
		key := nftables.TypeIPAddr
		if name[len(name)-1] == '6' {
			key = nftables.TypeIP6Addr
		}
		s := &nftables.Set{Table: t.table, Name: name, IsMap: true, KeyType: key, DataType: nftables.TypeVerdict}
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
		t.maps[name] = s
	}
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Table: t.table, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	inp := c.AddChain(&nftables.Chain{Table: t.table, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, ch := range []*nftables.Chain{fwd, inp} {
		c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: establishedAccept()})
		c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: vmap(4, false, t.maps["egress4"])})
		c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: vmap(6, false, t.maps["egress6"])})
	}
	c.AddRule(&nftables.Rule{Table: t.table, Chain: fwd, Exprs: vmap(4, true, t.maps["ingress4"])})
	c.AddRule(&nftables.Rule{Table: t.table, Chain: fwd, Exprs: vmap(6, true, t.maps["ingress6"])})
	for _, key := range sortedKeys(want) {
		for d := range 2 {
			if want[key].dirs[d] != nil {
				if err := t.addDirection(key, d, want[key]); err != nil {
					return err
				}
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: replace table inet %s: %w", TableName, err)
	}
	return nil
}

func (t *Table) update(want map[string]endpoint) error {
	keys := sortedKeys(want)
	for k := range t.applied {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, key := range keys {
		old, nw := t.applied[key], want[key]
		for d := range 2 {
			switch od, nd := old.dirs[d], nw.dirs[d]; {
			case od == nil && nd == nil:
			case od != nil && nd == nil:
				t.delDirection(key, d, old)
			case od == nil && nd != nil:
				if err := t.addDirection(key, d, nw); err != nil {
					return err
				}
			default:
				if err := t.changeDirection(key, d, old, nw); err != nil {
					return err
				}
			}
		}
	}
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: update table inet %s: %w", TableName, err)
	}
	return nil
}

// names are a pod direction's chain and sets. Pod keys are DNS names joined
// by '/', which nft identifiers take; over-long ones are hashed.
func names(key string, d int) (chain string, sets [2]string) {
	k := key
	if len(k) > 200 {
		sum := sha256.Sum256([]byte(key))
		k = hex.EncodeToString(sum[:12])
	}
	return dirNames[d] + "-" + k, [2]string{dirNames[d] + "4-" + k, dirNames[d] + "6-" + k}
}

func (t *Table) setOf(name string, fam int) *nftables.Set {
	addr := nftables.TypeIPAddr
	if fam == 1 {
		addr = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t.table, Name: name, Interval: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)}
}

func (t *Table) addDirection(key string, d int, e endpoint) error {
	c := t.conn
	chainName, setNames := names(key, d)
	var sets [2]*nftables.Set
	for fam := range 2 {
		sets[fam] = t.setOf(setNames[fam], fam)
		if err := c.AddSet(sets[fam], nil); err != nil {
			return err
		}
		if err := chunked(c.SetAddElements, sets[fam], e.dirs[d].elems[fam]); err != nil {
			return err
		}
	}
	ch := c.AddChain(&nftables.Chain{Table: t.table, Name: chainName})
	for fam := range 2 {
		c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: lookupReturn(fam, d == in, sets[fam])})
	}
	c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}})
	return t.mapAddrs(d, e.addrs, chainName, true)
}

func (t *Table) delDirection(key string, d int, e endpoint) {
	chainName, setNames := names(key, d)
	_ = t.mapAddrs(d, e.addrs, chainName, false)
	t.conn.DelChain(&nftables.Chain{Table: t.table, Name: chainName})
	for fam := range 2 {
		t.conn.DelSet(t.setOf(setNames[fam], fam))
	}
}

func (t *Table) changeDirection(key string, d int, old, nw endpoint) error {
	chainName, setNames := names(key, d)
	for fam := range 2 {
		gone, added := diff(old.dirs[d].elems[fam], nw.dirs[d].elems[fam])
		s := t.setOf(setNames[fam], fam)
		if err := chunked(t.conn.SetDeleteElements, s, gone); err != nil {
			return err
		}
		if err := chunked(t.conn.SetAddElements, s, added); err != nil {
			return err
		}
	}
	goneAddrs, addedAddrs := diffAddrs(old.addrs, nw.addrs)
	if err := t.mapAddrs(d, goneAddrs, chainName, false); err != nil {
		return err
	}
	return t.mapAddrs(d, addedAddrs, chainName, true)
}

// mapAddrs adds (or deletes) the verdict-map entries sending a pod's
// addresses to its direction's chain.
func (t *Table) mapAddrs(d int, addrs []netip.Addr, chain string, add bool) error {
	for _, a := range addrs {
		name := [2]string{"ingress", "egress"}[d] + "4"
		if a.Is6() {
			name = name[:len(name)-1] + "6"
		}
		el := []nftables.SetElement{{Key: a.AsSlice(), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
		var err error
		if add {
			err = t.conn.SetAddElements(t.maps[name], el)
		} else {
			err = t.conn.SetDeleteElements(t.maps[name], el)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// compileDirection turns a compiled direction into set elements: each any
// range over every protocol and port, each port entry's ranges over its
// protocol and ports.
func compileDirection(d policy.Direction) *direction {
	out := &direction{}
	add := func(r netipx.IPRange, proto [2]byte, first, last uint16) {
		fam := 0
		if r.From().Is6() {
			fam = 1
		}
		out.elems[fam] = append(out.elems[fam], element{
			key: keyBytes(r.From(), proto[0], first),
			end: keyBytes(r.To(), proto[1], last),
		})
	}
	for _, r := range d.Any {
		add(r, [2]byte{0, 255}, 0, 65535)
	}
	for _, pa := range d.Ports {
		for _, pr := range protoRanges(pa.Protocol) {
			for _, r := range pa.Peers {
				add(r, pr, pa.First, pa.Last)
			}
		}
	}
	for fam := range 2 {
		slices.SortFunc(out.elems[fam], func(a, b element) int {
			if a.key != b.key {
				if a.key < b.key {
					return -1
				}
				return 1
			}
			return 0
		})
	}
	return out
}

// keyBytes is address . protocol . port as the kernel stores a concatenation:
// each field padded to a 4-byte register, the port in network order.
func keyBytes(a netip.Addr, proto byte, port uint16) string {
	b := a.AsSlice()
	b = append(b, proto, 0, 0, 0, byte(port>>8), byte(port), 0, 0)
	return string(b)
}

// protoRanges are the IP protocol numbers of a protocol class: one for TCP,
// UDP and SCTP, every other number for OtherProtocols.
func protoRanges(p policy.Protocol) [][2]byte {
	switch p {
	case policy.TCP:
		return [][2]byte{{unix.IPPROTO_TCP, unix.IPPROTO_TCP}}
	case policy.UDP:
		return [][2]byte{{unix.IPPROTO_UDP, unix.IPPROTO_UDP}}
	case policy.SCTP:
		return [][2]byte{{unix.IPPROTO_SCTP, unix.IPPROTO_SCTP}}
	case policy.OtherProtocols:
		return [][2]byte{
			{0, unix.IPPROTO_TCP - 1}, {unix.IPPROTO_TCP + 1, unix.IPPROTO_UDP - 1},
			{unix.IPPROTO_UDP + 1, unix.IPPROTO_SCTP - 1}, {unix.IPPROTO_SCTP + 1, 255},
		}
	}
	panic("nft: unknown protocol class " + string(p)) // the compiler makes only these
}

// chunked adds (or deletes) elements maxElemsPerMsg to a message; the
// messages stay in the one transaction.
func chunked(op func(*nftables.Set, []nftables.SetElement) error, s *nftables.Set, es []element) error {
	for len(es) > 0 {
		n := min(len(es), maxElemsPerMsg)
		if err := op(s, setElements(es[:n])); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

func setElements(es []element) []nftables.SetElement {
	out := make([]nftables.SetElement, len(es))
	for i, e := range es {
		out[i] = nftables.SetElement{Key: []byte(e.key), KeyEnd: []byte(e.end)}
	}
	return out
}

// diff is what old has and nw lacks, and what nw has and old lacks, in
// their order; by hash, since a direction may hold tens of thousands of
// elements.
func diff(old, nw []element) (gone, added []element) {
	in := func(es []element) map[element]struct{} {
		m := make(map[element]struct{}, len(es))
		for _, e := range es {
			m[e] = struct{}{}
		}
		return m
	}
	oldSet, nwSet := in(old), in(nw)
	for _, e := range old {
		if _, ok := nwSet[e]; !ok {
			gone = append(gone, e)
		}
	}
	for _, e := range nw {
		if _, ok := oldSet[e]; !ok {
			added = append(added, e)
		}
	}
	return gone, added
}

func diffAddrs(old, nw []netip.Addr) (gone, added []netip.Addr) {
	for _, a := range old {
		if !slices.Contains(nw, a) {
			gone = append(gone, a)
		}
	}
	for _, a := range nw {
		if !slices.Contains(old, a) {
			added = append(added, a)
		}
	}
	return gone, added
}

func sortedKeys(m map[string]endpoint) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Registers: NFT_REG_1 is the 16-byte register holding the address (4 or
// 16 bytes), followed by the 4-byte registers of the protocol and port.
const (
	regAddr   = 1
	reg32Base = 8 // NFT_REG32_00
)

func nfproto(fam int) []expr.Any {
	v := byte(unix.NFPROTO_IPV4)
	if fam == 1 {
		v = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regAddr},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regAddr, Data: []byte{v}},
	}
}

// addrLoad loads the source or destination address of family fam (0 IPv4,
// 1 IPv6) into the address register.
func addrLoad(fam int, src bool) expr.Any {
	off, n := uint32(16), uint32(4)
	switch {
	case fam == 0 && src:
		off = 12
	case fam == 1 && src:
		off, n = 8, 16
	case fam == 1:
		off, n = 24, 16
	}
	return &expr.Payload{DestRegister: regAddr, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

// lookupReturn: addr . l4proto . th dport @set return. The address is the
// peer's: the source on ingress, the destination on egress.
func lookupReturn(fam int, ingress bool, s *nftables.Set) []expr.Any {
	words := uint32(1)
	if fam == 1 {
		words = 4
	}
	e := nfproto(fam)
	return append(e,
		addrLoad(fam, ingress),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32Base + words},
		&expr.Payload{DestRegister: reg32Base + words + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: regAddr, SetName: s.Name, SetID: s.ID},
		&expr.Verdict{Kind: expr.VerdictReturn},
	)
}

// vmap: ip saddr|daddr vmap @m — the pod's own address: the source for its
// egress, the destination for its ingress.
func vmap(v int, daddr bool, m *nftables.Set) []expr.Any {
	fam := 0
	if v == 6 {
		fam = 1
	}
	e := nfproto(fam)
	return append(e,
		addrLoad(fam, !daddr),
		&expr.Lookup{SourceRegister: regAddr, DestRegister: 0, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
	)
}

func establishedAccept() []expr.Any {
	mask := uint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// SetElements counts the elements of each set in `nft -j list table`
// output, by set name: what the kernel holds, read back for checks.
func SetElements(listJSON []byte) (map[string]int, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(listJSON, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list table: %w", err)
	}
	out := map[string]int{}
	for _, o := range doc.Nftables {
		if o.Set != nil {
			out[o.Set.Name] = len(o.Set.Elem)
		}
	}
	return out, nil
}
