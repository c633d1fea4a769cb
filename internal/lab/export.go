package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// IPBatch runs `ip [-n NETNS] -batch -` over cmds: one process for a whole
// namespace's set-up. Benchmarks that add to a lab (internal/labbench) use
// it so lab-made links stay the lab's way of doing things.
func IPBatch(ctx context.Context, netns string, cmds []string) error {
	return ipBatch(ctx, netns, cmds)
}

// NetCounters reads a namespace's IP counters (/proc/net/snmp and
// /proc/net/netstat) as "Section:Name", e.g. "Ip:ForwDatagrams" or
// "IpExt:OutOctets".
func NetCounters(ctx context.Context, netns string) (map[string]int64, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", netns, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		return nil, fmt.Errorf("counters of %s: %w", netns, err)
	}
	return parseNetCounters(string(out)), nil
}

// parseNetCounters reads the format of /proc/net/snmp and
// /proc/net/netstat: each section is a line of names and a line of values,
// both headed "Section:". Anything else is skipped.
func parseNetCounters(text string) map[string]int64 {
	c := map[string]int64{}
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) < 2 || len(keys) != len(vals) || keys[0] != vals[0] || !strings.HasSuffix(keys[0], ":") {
			continue
		}
		for j, k := range keys[1:] {
			if v, err := strconv.ParseInt(vals[j+1], 10, 64); err == nil {
				c[keys[0]+k] = v
			}
		}
		i++
	}
	return c
}
