package lab

import "context"

// IPBatch runs `ip [-n NETNS] -batch -` over cmds: one process for a whole
// namespace's set-up. Benchmarks that add to a lab (internal/labbench) use
// it so lab-made links stay the lab's way of doing things.
func IPBatch(ctx context.Context, netns string, cmds []string) error {
	return ipBatch(ctx, netns, cmds)
}
