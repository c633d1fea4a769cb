package main

import (
	"bytes"
	"os"
	"path/filepath"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/plan"
	"github.com/terrane-net/terrane/internal/ui"
)

// writePlanHTML writes the page `terrane server` serves for the plan's
// simulated state (internal/ui: the same view model and template), from
// the very simulation the plan printed.
func writePlanHTML(file, topoFile string, rep *plan.Report, al *ipam.Allocator) error {
	v := ui.Build(ui.Input{Title: "plan of " + filepath.Base(topoFile), Mode: rep.Mode, Alloc: al, Reports: rep.Networks,
		Now: time.Now(), Fits: &rep.Fits, Errors: rep.Errors})
	var buf bytes.Buffer
	if err := ui.Render(&buf, v); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}
