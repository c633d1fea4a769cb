// Package labexamples ships the lab's scenarios inside the terrane binary,
// so `terrane lab up` works without a checkout: `--scenario two-racks`
// names a shipped scenario, a path names a file.
package labexamples

import "embed"

// FS holds every scenario of this directory (*.yaml) and the policy cases
// of netpol/ (the upstream NetworkPolicy e2e cases, run on the netpol
// scenario).
//
//go:embed *.yaml netpol/*.yaml
var FS embed.FS

// Default is the scenario `terrane lab up` runs without --scenario.
const Default = "flat-l2.yaml"
