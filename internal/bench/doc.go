// Package bench holds benchmarks that measure Terrane (see
// docs/benchmarks.md): Go benchmarks side by side with a peer implementation
// in the same run, and RunStore, the control-plane workload behind
// `terrane bench store`.
package bench
