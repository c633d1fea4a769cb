//go:build race

package gobgp

// raceEnabled: GoBGP 4.8.0 as a graceful-restart helper marks paths stale
// without a lock the race detector accepts (table.(*Path).MarkStale); the
// in-process helper test skips under -race. BIRD plays the helper in the
// privileged test.
const raceEnabled = true
