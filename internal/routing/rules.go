package routing

import (
	"go4.org/netipx"

	"github.com/terrane-net/terrane/internal/netx"
)

// solvable drops the wantDefault rules that touch no other rule's space:
// their addresses keep the default without them (no rule covers them, or
// only other wantDefault ones), so the answer is the same and the trie
// stays the size of the level's own space — a ToR's group, a host's
// segment, the vpc groups — rather than the whole network's blocks.
func solvable(rules []netx.RouteRule) []netx.RouteRule {
	var b netipx.IPSetBuilder
	for _, r := range rules {
		if r.Want != netx.WantDefault && r.Prefix.IsValid() {
			b.AddPrefix(r.Prefix.Masked())
		}
	}
	live, err := b.IPSet()
	if err != nil {
		return rules
	}
	out := rules[:0:0]
	for _, r := range rules {
		if r.Want != netx.WantDefault || live.OverlapsPrefix(r.Prefix.Masked()) {
			out = append(out, r)
		}
	}
	return out
}

// blockRules states the blocks of every host: a target's blocks (t ≥ 0)
// accept what targets says, every other host's keep the default.
func blockRules(hosts []Host, target func(*Host) []int) []netx.RouteRule {
	var out []netx.RouteRule
	for i := range hosts {
		h := &hosts[i]
		ts := target(h)
		for _, b := range h.Blocks {
			if !b.IsValid() {
				continue
			}
			if len(ts) > 0 {
				out = append(out, netx.TargetsRule(b.Masked(), blockRank, ts...))
			} else {
				out = append(out, netx.RouteRule{Prefix: b.Masked(), Want: netx.WantDefault, Rank: blockRank})
			}
		}
	}
	return out
}
