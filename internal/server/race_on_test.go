//go:build race

package server

// raceEnabled: the race detector slows the embedded etcd ~15x; proofs size
// their workload down under it.
const raceEnabled = true
