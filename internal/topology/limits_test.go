package topology

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLoadLargeFiles: MaxFileSize bounds the input, and Load's work must be
// bounded by the input's size, not its square or cube. Each file below is
// a few hundred kilobytes; before the fixes each took from a minute to
// gigabytes (laying out groups rescanned every placed sibling for each new
// one; every unknown network reference listed all networks; every network
// was compared with every other).
func TestLoadLargeFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("large inputs")
	}
	gen := func(f func(b *strings.Builder)) []byte {
		var b strings.Builder
		f(&b)
		return []byte(b.String())
	}
	tests := []struct {
		name   string
		file   []byte
		errors int // -1: any number
	}{
		{"many groups", gen(func(b *strings.Builder) {
			b.WriteString("networks: [{name: a, cidr: \"fd00::/48\", blockSize: 120}]\ntopologies:\n- networks: [a]\n  groups:\n")
			for i := range 10000 {
				fmt.Fprintf(b, "  - {name: g%d}\n", i)
			}
		}), 0},
		{"many pinned and unpinned groups", gen(func(b *strings.Builder) {
			b.WriteString("networks: [{name: a, cidr: \"fd00::/48\", blockSize: 120}]\ntopologies:\n- networks: [a]\n  groups:\n")
			for i := range 4000 {
				fmt.Fprintf(b, "  - {name: p%d, prefix: \"fd00::%x:0/120\"}\n  - {name: g%d}\n", i, 2*i, i)
			}
		}), 0},
		{"many unknown networks", gen(func(b *strings.Builder) {
			b.WriteString("networks:\n")
			for i := range 8000 {
				fmt.Fprintf(b, "- {name: n%d, cidr: 10.%d.%d.0/24, blockSize: 26}\n", i, i/256, i%256)
			}
			b.WriteString("topologies:\n- groups: [{name: g}]\n  networks: [")
			for i := range 8000 {
				fmt.Fprintf(b, "x%d,", i)
			}
			b.WriteString("]\n")
		}), 16000},
		{"many identical networks", gen(func(b *strings.Builder) {
			b.WriteString("networks:\n")
			for i := range 5000 {
				fmt.Fprintf(b, "- {name: n%d, cidr: 10.0.0.0/16, blockSize: 26, default: true, namespaces: [a, b, c, d, e, f, g, h]}\n", i)
			}
			b.WriteString("topologies: [{networks: [n0], groups: [{name: g}]}]\nserviceCIDRs:\n")
			for range 5000 {
				b.WriteString("- 10.0.0.0/8\n")
			}
		}), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			top, err := Load(tt.file)
			took := time.Since(start)
			switch {
			case tt.errors == 0 && err != nil:
				t.Fatal(err)
			case tt.errors == 0:
				assertInvariants(t, top)
			case tt.errors > 0:
				if got := len(fieldErrors(t, err)); got != tt.errors {
					t.Errorf("%d errors, want %d", got, tt.errors)
				}
			default:
				// A few errors per bad line: never one per pair of lines.
				if got := len(fieldErrors(t, err)); got > 4*5000 {
					t.Errorf("%d errors for 10000 entries", got)
				}
			}
			if len(tt.file) > MaxFileSize {
				t.Fatalf("test file is %d bytes, over MaxFileSize", len(tt.file))
			}
			if took > 60*time.Second {
				t.Errorf("Load of %d bytes took %v", len(tt.file), took)
			}
			t.Logf("%d bytes in %v", len(tt.file), took)
		})
	}
}
