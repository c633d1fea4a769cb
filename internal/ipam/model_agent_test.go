package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// agentStep runs one random operation of a host's agent, or restarts the
// server or an agent; k (0–39) picks which. Pods and the server's VM ports
// (AllocateEndpoint, in step) interleave on the same hosts.
func (m *model) agentStep(k int) {
	host, network := m.hostName(), m.networkName()
	var desc string
	switch {
	case k < 18:
		desc = m.podAdd(host, network)
	case k < 28:
		desc = m.podDel(host)
	case k < 32:
		desc = m.agentReleaseSurplus(host)
	case k < 36:
		// The agent restarts: its pools are rebuilt from its node-local
		// records of pods and the server's blocks.
		if ag := m.agents[host]; ag != nil {
			ag.pools = map[string]*Pool{}
			for _, p := range slices.Sorted(maps.Keys(ag.pods)) {
				e := ag.pods[p]
				if err := ag.pool(e.Network).Mark(e.Addr, e.Block); err != nil {
					m.fail("agent %s restart: pod %s: %v", host, p, err)
				}
			}
		}
		desc = fmt.Sprintf("RestartAgent(%s)", host)
	default:
		// The server restarts: its allocator is rebuilt from what it
		// persisted (every change).
		fresh := emptyAllocator(m.top, m.opts)
		if err := fresh.Apply(m.log); err != nil {
			m.fail("server restart: replaying %d changes: %v", len(m.log), err)
			return
		}
		if d := diffViews(snapshot(m.a), snapshot(fresh)); d != "" {
			m.fail("server restart changed the state (-before +after):\n%s", d)
		}
		m.a = fresh
		desc = "RestartServer()"
	}
	m.history = append(m.history, desc)
	m.checkNoAddressTwice()
}

func (ag *modelAgent) pool(network string) *Pool {
	p := ag.pools[network]
	if p == nil {
		p = NewPool()
		ag.pools[network] = p
	}
	return p
}

// follow gives the agent's pool its open blocks as the server lists them
// (the agent's snapshot): its own agent blocks in its current group.
func (m *model) follow(host, network string, ag *modelAgent) {
	h, _ := m.a.Host(host)
	var owned []netip.Prefix
	for _, b := range m.a.Blocks(network) {
		if b.Host == host && b.Issuer == IssuerAgent && b.Group == h.Groups[network] {
			owned = append(owned, b.Prefix)
		}
	}
	ag.pool(network).SetOwned(owned)
}

func (m *model) agent(host string) *modelAgent {
	ag := m.agents[host]
	if ag == nil {
		ag = &modelAgent{pools: map[string]*Pool{}, pods: map[string]Endpoint{}}
		m.agents[host] = ag
	}
	return ag
}

func (m *model) podAdd(host, network string) string {
	h, ok := m.a.Host(host)
	if !ok || m.top.Network(network) == nil || h.Groups[network] == "" {
		return fmt.Sprintf("PodAdd(%s, %s): skipped", host, network)
	}
	ag := m.agent(host)
	m.follow(host, network, ag)
	addr, block, ok := ag.pool(network).Allocate()
	if !ok {
		p, changes, err := m.a.ClaimBlock(host, network)
		m.log = append(m.log, changes...)
		if err := m.replica.Apply(changes); err != nil {
			m.fail("replaying %v on the replica: %v", changes, err)
		}
		if err != nil {
			return fmt.Sprintf("PodAdd(%s, %s): claim: %v", host, network, err)
		}
		ag.pool(network).Open(p)
		if addr, block, ok = ag.pool(network).Allocate(); !ok {
			m.fail("PodAdd(%s, %s): no address right after claiming %s", host, network, p)
			return ""
		}
	}
	id := fmt.Sprintf("pod%d", m.nextID)
	m.nextID++
	ag.pods[id] = Endpoint{ID: id, Network: network, Host: host, Addr: addr, Block: block}
	return fmt.Sprintf("PodAdd(%s, %s) -> %s %s", host, network, id, addr)
}

func (m *model) podDel(host string) string {
	ag := m.agents[host]
	if ag == nil || len(ag.pods) == 0 {
		return fmt.Sprintf("PodDel(%s): no pod", host)
	}
	ids := slices.Sorted(maps.Keys(ag.pods))
	id := ids[m.r.IntN(len(ids))]
	e := ag.pods[id]
	ag.pool(e.Network).Unmark(e.Addr, e.Block)
	delete(ag.pods, id)
	return fmt.Sprintf("PodDel(%s) -> %s %s", host, id, e.Addr)
}

// agentReleaseSurplus gives back what the agent does not need: surplus
// empty blocks, and empty blocks of a group the host has left.
func (m *model) agentReleaseSurplus(host string) string {
	ag := m.agents[host]
	if ag == nil {
		return fmt.Sprintf("ReleaseSurplus(%s): no agent", host)
	}
	var released []netip.Prefix
	for _, n := range m.top.Networks {
		if _, ok := m.a.Host(host); !ok {
			break
		}
		m.follow(host, n.Name, ag)
		p := ag.pool(n.Name)
		give := p.Surplus(1)
		for _, b := range m.a.Blocks(n.Name) {
			if b.Host == host && b.Issuer == IssuerAgent && !p.IsOpen(b.Prefix) && p.Empty(b.Prefix) {
				give = append(give, b.Prefix)
			}
		}
		for _, b := range give {
			p.Close(b)
			changes, err := m.a.ReleaseBlock(host, n.Name, b)
			if err != nil {
				m.fail("agent %s releasing its empty block %s: %v", host, b, err)
				continue
			}
			m.log = append(m.log, changes...)
			if err := m.replica.Apply(changes); err != nil {
				m.fail("replaying %v on the replica: %v", changes, err)
			}
			p.Remove(b)
			released = append(released, b)
		}
	}
	return fmt.Sprintf("ReleaseSurplus(%s) -> %v", host, released)
}

// agentEmpty reports whether host's agent holds no pod in block p.
func (m *model) agentEmpty(host, network string, p netip.Prefix) bool {
	ag := m.agents[host]
	return ag == nil || ag.pool(network).Empty(p)
}

// checkNoAddressTwice is invariant 1 across both allocators: no address
// is held by two endpoints, pods and VM ports alike; every pod's address
// lies in an agent block of its own host, every VM port's in a server block.
func (m *model) checkNoAddressTwice() {
	m.t.Helper()
	holder := map[string]map[netip.Addr]string{}
	hold := func(network string, addr netip.Addr, who string) {
		if holder[network] == nil {
			holder[network] = map[netip.Addr]string{}
		}
		if o, dup := holder[network][addr]; dup {
			m.fail("invariant 1: %s in %s is held by %s and %s", addr, network, o, who)
		}
		holder[network][addr] = who
	}
	blocks := map[string]map[netip.Prefix]BlockInfo{}
	for _, n := range m.top.Networks {
		blocks[n.Name] = map[netip.Prefix]BlockInfo{}
		for _, b := range m.a.Blocks(n.Name) {
			blocks[n.Name][b.Prefix] = b
		}
	}
	for _, e := range m.a.Endpoints() {
		hold(e.Network, e.Addr, "VM port "+e.ID)
		if b := blocks[e.Network][e.Block]; b.Issuer != IssuerServer {
			m.fail("VM port %s (%s) is in block %s issued by %q", e.ID, e.Addr, e.Block, b.Issuer)
		}
	}
	for _, host := range slices.Sorted(maps.Keys(m.agents)) {
		ag := m.agents[host]
		for _, id := range slices.Sorted(maps.Keys(ag.pods)) {
			e := ag.pods[id]
			hold(e.Network, e.Addr, "pod "+id+" on "+host)
			b, ok := blocks[e.Network][e.Block]
			if !ok || b.Host != host || b.Issuer != IssuerAgent {
				m.fail("pod %s (%s on %s) is in block %s, which the server lists as %+v (%v)", id, e.Addr, host, e.Block, b, ok)
			}
		}
	}
}
