// Package bench holds benchmarks that measure Terrane's core side by side
// with a peer implementation in the same run (see docs/benchmarks.md). It has
// no production code.
package bench
