package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/plan"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/ui"
)

// withPlanHTML adds --html FILE to the plan command: after the plan is
// printed, the page `terrane server` serves is written for the simulated
// state (internal/ui: the same view model and template). The simulation
// is deterministic, so the page shows exactly the state the report sums
// up.
func withPlanHTML(cmd *cobra.Command) *cobra.Command {
	var file string
	cmd.Flags().StringVar(&file, "html", "", "also write the topology page of the simulated state to FILE (open it in a browser; no server needed)")
	printPlan := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := printPlan(cmd, args)
		var ee *exitError
		if file == "" || (err != nil && (!errors.As(err, &ee) || ee.code != 1)) {
			return err // no page asked for, or the input is invalid
		}
		if herr := writePlanHTML(cmd, file); herr != nil {
			return &exitError{code: 2, err: fmt.Errorf("--html %s: %w", file, herr)}
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "wrote the topology page to %s\n", file)
		return err
	}
	return cmd
}

// writePlanHTML simulates again with the flags the plan ran with (already
// checked by it) and writes the page.
func writePlanHTML(cmd *cobra.Command, file string) error {
	f := cmd.Flags()
	topoFile, _ := f.GetString("topology")
	hostsFile, _ := f.GetString("hosts")
	budgets, _ := f.GetString("route-budget")
	mode, _ := f.GetString("mode")
	pods, _ := f.GetInt("pods-per-host")
	fill, _ := f.GetBool("fill")
	skew, _ := f.GetFloat64("skew")
	pm, err := ipam.ParsePlanMode(mode)
	if err != nil {
		return err
	}
	b, err := parseBudgets(budgets)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(topoFile)
	if err != nil {
		return err
	}
	topo, err := topology.Load(data)
	if err != nil {
		return err
	}
	var hosts []plan.ParsedHost
	if hostsFile != "" {
		data, err := os.ReadFile(hostsFile)
		if err != nil {
			return err
		}
		if hosts, err = plan.ParseHosts(data); err != nil {
			return err
		}
	}
	rep, al, err := plan.Simulate(topo, hosts, plan.Options{Mode: pm, Budgets: b, PodsPerHost: pods, Fill: fill, Skew: skew})
	if err != nil {
		return err
	}
	v := ui.Build(ui.Input{Title: "plan of " + filepath.Base(topoFile), Mode: rep.Mode, Alloc: al, Reports: rep.Networks,
		Now: time.Now(), Fits: &rep.Fits, Errors: rep.Errors})
	var buf bytes.Buffer
	if err := ui.Render(&buf, v); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}
