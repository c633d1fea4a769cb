package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/lab"
)

// newLabPolicyCasesCommand is lab policy cases: a file of policy cases run
// on a --k8s lab, case by case, pair by pair.
func newLabPolicyCasesCommand(f *labFlags) *cobra.Command {
	var run string
	cmd := &cobra.Command{
		Use:   "cases [FILE]",
		Short: "Run policy cases (without FILE: the upstream Kubernetes NetworkPolicy e2e cases) on a --k8s lab, pair by pair; exit 1 if any fails",
		Long: `Each case starts from a reset lab (every NetworkPolicy and
ClusterNetworkPolicy deleted, every pod's and namespace's labels as the
scenario gives them); each step's label changes, deletions and policies go
through the API, the command waits until every agent enforces them, then
probes the case's pods pair by pair on the step's ports and compares with
the expected matrix (a pod to itself is not compared, as upstream). SCTP
probes are left out. The lab is reset at the end. The file format is in
docs/lab.md ("Policy cases").`,
		Example: `  terrane lab up --k8s --scenario netpol
  terrane lab policy cases
  terrane lab policy cases --run 'named port' -o json
  terrane lab policy cases my-cases.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := f.json(); err != nil {
				return err
			}
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			// The file and --run are checked before the lab is looked at.
			file, err := lab.LoadPolicyCases(ref, os.ReadFile)
			if err != nil {
				return err
			}
			cases := file.Cases
			if run != "" {
				re, err := regexp.Compile(run)
				if err != nil {
					return fmt.Errorf("--run %q: %w", run, err)
				}
				cases = cases[:0:0]
				for _, c := range file.Cases {
					if re.MatchString(c.Title()) {
						cases = append(cases, c)
					}
				}
				if len(cases) == 0 {
					return fmt.Errorf("--run %q matches no case", run)
				}
			}
			asJSON, st, err := f.running()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			progress := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
			if asJSON {
				progress = nil
			}
			rs, err := lab.RunPolicyCases(cmd.Context(), st, cases, progress)
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range rs {
				if !r.Pass {
					failed++
				}
			}
			if asJSON {
				if err := writeJSON(out, map[string]any{"summary": lab.PolicyCaseSummary(rs), "cases": rs}); err != nil {
					return err
				}
			} else {
				for _, r := range rs {
					if r.Pass {
						continue
					}
					fmt.Fprintf(out, "\nFAIL %s\n", r.Case)
					if r.Error != "" {
						fmt.Fprintf(out, "  %s\n", r.Error)
					}
					for _, m := range r.Mismatches {
						fmt.Fprintf(out, "  %s\n", m)
					}
					for _, t := range r.Tables {
						fmt.Fprintf(out, "  %s\n", strings.ReplaceAll(t, "\n", "\n  "))
					}
				}
				fmt.Fprintln(out, lab.PolicyCaseSummary(rs))
			}
			if failed > 0 {
				cmd.SilenceUsage = true
				return fmt.Errorf("%d of %d cases fail", failed, len(rs))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run only the cases whose context and name match this regular expression")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	return cmd
}
