package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	labexamples "github.com/terrane-net/terrane/examples/lab"
	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/policy"
)

// PolicyCaseFile is a file of policy cases: policies, label changes and
// deletions in steps, each step with the ports it probes and the matrix it
// expects (docs/lab.md, "Policy cases").
type PolicyCaseFile struct {
	// Scenario is the shipped scenario (or file) the cases run on.
	Scenario string       `json:"scenario"`
	Cases    []PolicyCase `json:"cases"`
}

// PolicyCase is one case: a name, the pods whose pairs it compares, and
// its steps.
type PolicyCase struct {
	// Context and Name are the upstream Context and It texts.
	Context string `json:"context,omitempty"`
	Name    string `json:"name"`
	// Pods are the case's pods as NAMESPACE/POD ("x/a" is the lab pod x/x-a).
	Pods  []string         `json:"pods"`
	Steps []PolicyCaseStep `json:"steps"`
}

// Title is the case's context and name.
func (c PolicyCase) Title() string {
	return strings.TrimSpace(c.Context + " " + c.Name)
}

// PolicyCaseStep changes the cluster (labels, then deletions, then
// policies applied), waits until every agent enforces it, and probes.
type PolicyCaseStep struct {
	Label  []CaseLabel       `json:"label,omitempty"`
	Delete []string          `json:"delete,omitempty"`
	Apply  []json.RawMessage `json:"apply,omitempty"`
	Probes []PolicyCaseProbe `json:"probes"`
}

// CaseLabel sets (KEY=VALUE) or removes (KEY-) labels of a case's pod or of
// a namespace.
type CaseLabel struct {
	Pod       string   `json:"pod,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Set       []string `json:"set"`
}

// PolicyCaseProbe is one port probed and the matrix expected: rules
// "deny FROM -> TO" or "reach FROM -> TO" applied in order to a matrix
// that starts all reached.
type PolicyCaseProbe struct {
	Port   string   `json:"port"`
	Expect []string `json:"expect"`
}

// UpstreamCasesFile is the shipped file of the upstream Kubernetes
// NetworkPolicy e2e cases.
const UpstreamCasesFile = "netpol/upstream.yaml"

// LoadPolicyCases reads a case file: "" or "upstream" is the shipped
// upstream cases, anything else a path.
func LoadPolicyCases(ref string, read func(string) ([]byte, error)) (*PolicyCaseFile, error) {
	var data []byte
	var err error
	if ref == "" || ref == "upstream" {
		data, err = labexamples.FS.ReadFile(UpstreamCasesFile)
	} else {
		data, err = read(ref)
	}
	if err != nil {
		return nil, err
	}
	return ParsePolicyCases(data)
}

// ParsePolicyCases parses and checks a case file; every problem is named
// by its field.
func ParsePolicyCases(data []byte) (*PolicyCaseFile, error) {
	var f PolicyCaseFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		if strings.Contains(err.Error(), "bool") {
			err = fmt.Errorf("%w (YAML reads a bare y, n, yes, no, on or off as a boolean: quote it, \"y\")", err)
		}
		return nil, fmt.Errorf("policy cases: %w", err)
	}
	var errs []fielderr.FieldError
	bad := func(path, format string, a ...any) {
		errs = append(errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	if f.Scenario == "" {
		bad("scenario", "name the scenario the cases run on (netpol)")
	}
	if len(f.Cases) == 0 {
		bad("cases", "no case")
	}
	seen := map[string]bool{}
	for i, c := range f.Cases {
		p := fmt.Sprintf("cases[%d]", i)
		if c.Name == "" {
			bad(p+".name", "give the case a name")
		} else if seen[c.Title()] {
			bad(p+".name", "%q is already a case: context and name must be unique", c.Title())
		}
		seen[c.Title()] = true
		if len(c.Pods) == 0 {
			bad(p+".pods", "list the pods whose pairs the case compares (x/a, y/b)")
		}
		for j, pod := range c.Pods {
			if ns, name, ok := strings.Cut(pod, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				bad(fmt.Sprintf("%s.pods[%d]", p, j), "%q: give NAMESPACE/POD (x/a)", pod)
			}
		}
		if len(c.Steps) == 0 {
			bad(p+".steps", "no step")
		}
		for j, s := range c.Steps {
			sp := fmt.Sprintf("%s.steps[%d]", p, j)
			for k, l := range s.Label {
				lp := fmt.Sprintf("%s.label[%d]", sp, k)
				if (l.Pod == "") == (l.Namespace == "") {
					bad(lp, "give either pod (x/a) or namespace")
				}
				if l.Pod != "" && !slices.Contains(c.Pods, l.Pod) {
					bad(lp+".pod", "%q is not one of the case's pods %v", l.Pod, c.Pods)
				}
				if len(l.Set) == 0 {
					bad(lp+".set", "give KEY=VALUE to set a label or KEY- to remove it")
				}
				for m, kv := range l.Set {
					if k, v, ok := strings.Cut(kv, "="); (!ok && !strings.HasSuffix(kv, "-")) || k == "" || strings.Contains(v, "=") {
						bad(fmt.Sprintf("%s.set[%d]", lp, m), "%q: give KEY=VALUE or KEY-", kv)
					}
				}
			}
			for k, d := range s.Delete {
				if d == "" || strings.Count(d, "/") > 1 {
					bad(fmt.Sprintf("%s.delete[%d]", sp, k), "%q: give NAMESPACE/NAME (a NetworkPolicy) or NAME (a ClusterNetworkPolicy)", d)
				}
			}
			for k, a := range s.Apply {
				ap := fmt.Sprintf("%s.apply[%d]", sp, k)
				ok := true
				for _, m := range placeholder.FindAllStringSubmatch(string(a), -1) {
					if !slices.Contains(c.Pods, m[2]) {
						bad(ap, "%s: %q is not one of the case's pods %v", m[0], m[2], c.Pods)
						ok = false
					}
				}
				if !ok {
					continue
				}
				// Checked as the API server would, with a stand-in address.
				doc := fillPlaceholders(string(a), func(string) netip.Addr { return netip.MustParseAddr("10.10.0.1") })
				sc := &Scenario{Policies: []json.RawMessage{json.RawMessage(doc)}}
				for _, e := range sc.checkPolicies() {
					msg := e.Msg
					if strings.Contains(string(a), ":true") || strings.Contains(string(a), ":false") {
						msg += " (YAML reads a bare y, n, yes, no, on or off as a boolean: quote it, \"y\")"
					}
					bad(ap+strings.TrimPrefix(e.Path, "policies[0]"), "%s", msg)
				}
			}
			if len(s.Probes) == 0 {
				bad(sp+".probes", "no probe: give at least one port and its expected matrix")
			}
			ports := map[string]bool{}
			for k, pr := range s.Probes {
				pp := fmt.Sprintf("%s.probes[%d]", sp, k)
				if _, _, err := parseCasePort(pr.Port); err != nil {
					bad(pp+".port", "%v", err)
				} else if ports[pr.Port] {
					bad(pp+".port", "%q probed twice in one step", pr.Port)
				}
				ports[pr.Port] = true
				for m, r := range pr.Expect {
					if _, err := parsePairRule(r); err != nil {
						bad(fmt.Sprintf("%s.expect[%d]", pp, m), "%v", err)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, &fielderr.ValidationError{Subject: "policy cases", Errors: errs}
	}
	return &f, nil
}

// parseCasePort reads a probe's port: PORT/PROTOCOL (TCP, UDP or SCTP) or
// a port name. sctp: the probe names SCTP, which the lab cannot probe.
func parseCasePort(s string) (PortSpec, bool, error) {
	if n, proto, ok := strings.Cut(s, "/"); ok && strings.EqualFold(proto, "SCTP") {
		if _, err := ParsePortSpec(n + "/TCP"); err != nil {
			return PortSpec{}, false, fmt.Errorf("%q: a port is 1 to 65535", s)
		}
		return PortSpec{}, true, nil
	}
	ps, err := ParsePortSpec(s)
	if err != nil {
		return PortSpec{}, false, fmt.Errorf("%q: give PORT/PROTOCOL (80/TCP, 81/UDP, 80/SCTP) or a port name (serve-80-tcp)", s)
	}
	return ps, false, nil
}

// pairRule is one line of an expected matrix.
type pairRule struct {
	reach    bool
	from, to podPattern
}

// podPattern matches NAMESPACE/POD; "" is any.
type podPattern struct{ ns, pod string }

func (p podPattern) matches(pod string) bool {
	ns, name, _ := strings.Cut(pod, "/")
	return (p.ns == "" || p.ns == ns) && (p.pod == "" || p.pod == name)
}

func parsePodPattern(s string) (podPattern, error) {
	if s == "*" {
		return podPattern{}, nil
	}
	ns, pod, ok := strings.Cut(s, "/")
	if !ok || ns == "" || pod == "" || strings.Contains(pod, "/") {
		return podPattern{}, fmt.Errorf("%q: give NAMESPACE/POD, NAMESPACE/*, */POD or *", s)
	}
	p := podPattern{ns: ns, pod: pod}
	if ns == "*" {
		p.ns = ""
	}
	if pod == "*" {
		p.pod = ""
	}
	return p, nil
}

func parsePairRule(s string) (pairRule, error) {
	verb, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	from, to, ok := strings.Cut(rest, "->")
	if !ok || (verb != "deny" && verb != "reach") {
		return pairRule{}, fmt.Errorf("%q: give \"deny FROM -> TO\" or \"reach FROM -> TO\" (x/a, x/*, */a or *)", s)
	}
	f, err := parsePodPattern(strings.TrimSpace(from))
	if err != nil {
		return pairRule{}, err
	}
	t, err := parsePodPattern(strings.TrimSpace(to))
	if err != nil {
		return pairRule{}, err
	}
	return pairRule{reach: verb == "reach", from: f, to: t}, nil
}

// ExpectedMatrix is the matrix a probe's rules give over the pods: every
// ordered pair (each pod with itself included) starts reached, and each
// rule in turn sets the pairs it matches.
func ExpectedMatrix(pods, rules []string) (map[[2]string]bool, error) {
	m := map[[2]string]bool{}
	for _, f := range pods {
		for _, t := range pods {
			m[[2]string{f, t}] = true
		}
	}
	for _, s := range rules {
		r, err := parsePairRule(s)
		if err != nil {
			return nil, err
		}
		for _, f := range pods {
			for _, t := range pods {
				if r.from.matches(f) && r.to.matches(t) {
					m[[2]string{f, t}] = r.reach
				}
			}
		}
	}
	return m, nil
}

// placeholder is {{ip NS/POD}} (the pod's address) or {{net4 NS/POD}} (the
// /4 that holds it) in a case's policy.
var placeholder = regexp.MustCompile(`\{\{\s*(ip|net4)\s+([^\s}]+)\s*\}\}`)

// fillPlaceholders replaces each placeholder with addr's answer for its
// pod.
func fillPlaceholders(doc string, addr func(pod string) netip.Addr) string {
	return placeholder.ReplaceAllStringFunc(doc, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		a := addr(sub[2])
		if !a.IsValid() {
			return m
		}
		if sub[1] == "ip" {
			return a.String()
		}
		return netip.PrefixFrom(a, 4).Masked().String()
	})
}

// PolicyCaseResult is how one case went.
type PolicyCaseResult struct {
	Case string `json:"case"`
	Pass bool   `json:"pass"`
	// Compared is the number of (pair, port) observations compared, self
	// pairs excluded (as upstream: a pod to itself is never compared).
	Compared   int            `json:"compared"`
	Mismatches []CaseMismatch `json:"mismatches,omitempty"`
	// LeftOut are the probes not run, with why.
	LeftOut []string `json:"leftOut,omitempty"`
	// Loopback are self pairs the expected matrix denies and the lab
	// reached: not compared (upstream ignores them too), reported.
	Loopback []string `json:"loopback,omitempty"`
	// Tables are the expected and observed matrices of the probes that
	// differ.
	Tables  []string `json:"tables,omitempty"`
	Error   string   `json:"error,omitempty"`
	Seconds float64  `json:"seconds"`
}

// CaseMismatch is one pair on one port whose probe is not what the case
// expects.
type CaseMismatch struct {
	// Step counts from 1.
	Step  int    `json:"step"`
	Port  string `json:"port"`
	From  string `json:"from"`
	To    string `json:"to"`
	Want  bool   `json:"want"`
	Got   bool   `json:"got"`
	Error string `json:"error,omitempty"`
}

func (m CaseMismatch) String() string {
	word := map[bool]string{true: "reached", false: "denied"}
	s := fmt.Sprintf("step %d, %s -> %s on %s: %s, want %s", m.Step, m.From, m.To, m.Port, word[m.Got], word[m.Want])
	if m.Error != "" && m.Got {
		s += " (" + m.Error + ")"
	}
	return s
}

// casePodTarget is the lab pod of a case's pod: x/a is the pod x-a of
// namespace x.
func casePodTarget(pod string) string {
	ns, name, _ := strings.Cut(pod, "/")
	return ns + "/" + ns + "-" + name
}

// ResetPolicyCases brings the cluster back to its scenario: every
// NetworkPolicy and ClusterNetworkPolicy deleted, every scenario pod's and
// namespace's labels as the scenario gives them; then waits until every
// agent enforces that.
func ResetPolicyCases(ctx context.Context, st *State) error {
	b, err := backendOf(ctx, st)
	if err != nil {
		return err
	}
	refs, err := b.Policies(ctx)
	if err != nil {
		return fmt.Errorf("list policies: %w", err)
	}
	for _, ref := range refs {
		if err := b.Delete(ctx, ref); err != nil {
			return fmt.Errorf("delete %s: %w", ref, err)
		}
	}
	c, err := b.Cluster(ctx)
	if err != nil {
		return err
	}
	have := map[string]map[string]string{}
	for _, ns := range c.Namespaces {
		have[ns.Name] = ns.Labels
	}
	for _, p := range c.Pods {
		have[p.Key()] = p.Labels
	}
	for _, ns := range st.Scenario.Namespaces {
		if d := labelDiff(have[ns.Name], ns.Labels); len(d.Set)+len(d.Remove) > 0 {
			if err := b.Label(ctx, ns.Name, "", d); err != nil {
				return fmt.Errorf("namespace %s labels: %w", ns.Name, err)
			}
		}
	}
	for _, p := range st.Scenario.Pods {
		if d := labelDiff(have[p.Namespace+"/"+p.Name], p.Labels); len(d.Set)+len(d.Remove) > 0 {
			if err := b.Label(ctx, p.Namespace, p.Name, d); err != nil {
				return fmt.Errorf("pod %s/%s labels: %w", p.Namespace, p.Name, err)
			}
		}
	}
	if _, err := WaitEnforced(ctx, st); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

// labelDiff is the change that turns have into want. The namespace name
// label, which the API server keeps, stays.
func labelDiff(have, want map[string]string) api.LabelChange {
	var ch api.LabelChange
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			if ch.Set == nil {
				ch.Set = map[string]string{}
			}
			ch.Set[k] = v
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok && k != policy.MetadataNameLabel {
			ch.Remove = append(ch.Remove, k)
		}
	}
	slices.Sort(ch.Remove)
	return ch
}

// RunPolicyCases runs each case in turn on a --k8s lab: reset (every
// policy deleted, labels as the scenario gives them), then each step's
// changes through the lab's functions, a wait until every agent enforces
// them, and its probes among the case's pods, compared pair by pair with
// the expected matrix (a pod to itself excluded, as upstream). A case
// that fails to apply records its error and the run goes on; an error is
// returned only when the lab cannot be reset. The lab is reset at the end.
func RunPolicyCases(ctx context.Context, st *State, cases []PolicyCase, progress func(string, ...any)) ([]PolicyCaseResult, error) {
	if progress == nil {
		progress = func(string, ...any) {}
	}
	var out []PolicyCaseResult
	for i, c := range cases {
		if err := ResetPolicyCases(ctx, st); err != nil {
			return out, err
		}
		start := time.Now()
		r := runPolicyCase(ctx, st, c)
		r.Seconds = time.Since(start).Seconds()
		r.Pass = r.Error == "" && len(r.Mismatches) == 0
		verdict := "pass"
		switch {
		case !r.Pass:
			verdict = "FAIL"
		case r.Compared == 0:
			verdict = "policies enforced, nothing probed"
		}
		progress("%d/%d %s: %s (%d compared, %.1f s)", i+1, len(cases), c.Title(), verdict, r.Compared, r.Seconds)
		out = append(out, r)
	}
	return out, ResetPolicyCases(ctx, st)
}

func runPolicyCase(ctx context.Context, st *State, c PolicyCase) PolicyCaseResult {
	r := PolicyCaseResult{Case: c.Title()}
	all := st.PortTargets()
	byName := map[string]PortTarget{}
	for _, t := range all {
		byName[t.Pod] = t
	}
	var targets []PortTarget
	back := map[string]string{}
	for _, p := range c.Pods {
		t, ok := byName[casePodTarget(p)]
		if !ok {
			r.Error = fmt.Sprintf("pod %s: the lab has no pod %s (run the cases on the scenario their file names)", p, casePodTarget(p))
			return r
		}
		targets = append(targets, t)
		back[t.Pod] = p
	}
	for si, s := range c.Steps {
		if err := applyCaseStep(ctx, st, s, byName); err != nil {
			r.Error = fmt.Sprintf("step %d: %v", si+1, err)
			return r
		}
		var specs []PortSpec
		var run []PolicyCaseProbe
		for _, p := range s.Probes {
			ps, sctp, _ := parseCasePort(p.Port)
			if sctp {
				r.LeftOut = append(r.LeftOut, fmt.Sprintf("step %d, %s: SCTP cannot be probed (no SCTP in this kernel)", si+1, p.Port))
				continue
			}
			specs = append(specs, ps)
			run = append(run, p)
		}
		if len(specs) == 0 {
			continue
		}
		rep, err := ProbePorts(ctx, targets, specs)
		if err != nil {
			r.Error = fmt.Sprintf("step %d: probe: %v", si+1, err)
			return r
		}
		for pi, p := range run {
			want, err := ExpectedMatrix(c.Pods, p.Expect)
			if err != nil {
				r.Error = err.Error()
				return r
			}
			got := map[[2]string]PortResult{}
			for _, res := range rep.Results {
				if res.Spec == specs[pi].String() {
					got[[2]string{back[res.From], back[res.To]}] = res
				}
			}
			differ := false
			for _, f := range c.Pods {
				for _, t := range c.Pods {
					pr, ok := got[[2]string{f, t}]
					w := want[[2]string{f, t}]
					if !ok {
						r.Error = fmt.Sprintf("step %d, %s: no result for %s -> %s", si+1, p.Port, f, t)
						return r
					}
					if f == t {
						if !w && pr.OK {
							r.Loopback = append(r.Loopback, fmt.Sprintf("step %d, %s -> %s on %s", si+1, f, t, p.Port))
						}
						continue
					}
					r.Compared++
					if pr.OK != w {
						differ = true
						r.Mismatches = append(r.Mismatches, CaseMismatch{Step: si + 1, Port: p.Port, From: f, To: t, Want: w, Got: pr.OK, Error: pr.Error})
					}
				}
			}
			if differ {
				r.Tables = append(r.Tables, fmt.Sprintf("step %d, port %s, expected:\n%s\nobserved:\n%s", si+1, p.Port, caseTable(c.Pods, func(f, t string) bool { return want[[2]string{f, t}] }),
					caseTable(c.Pods, func(f, t string) bool { return got[[2]string{f, t}].OK })))
			}
		}
	}
	return r
}

// applyCaseStep makes a step's changes and waits until every agent
// enforces them.
func applyCaseStep(ctx context.Context, st *State, s PolicyCaseStep, pods map[string]PortTarget) error {
	for _, l := range s.Label {
		var err error
		if l.Pod != "" {
			err = Label(ctx, st, "pod", casePodTarget(l.Pod), l.Set)
		} else {
			err = Label(ctx, st, "namespace", l.Namespace, l.Set)
		}
		if err != nil {
			return fmt.Errorf("label: %w", err)
		}
	}
	for _, d := range s.Delete {
		if err := DeletePolicy(ctx, st, d); err != nil {
			return fmt.Errorf("delete %s: %w", d, err)
		}
	}
	if len(s.Apply) > 0 {
		var docs [][]byte
		for _, a := range s.Apply {
			var ferr error
			doc := fillPlaceholders(string(a), func(pod string) netip.Addr {
				t, ok := pods[casePodTarget(pod)]
				if !ok || !t.Addr.IsValid() {
					ferr = fmt.Errorf("the lab has no address for pod %s", pod)
				}
				return t.Addr
			})
			if ferr != nil {
				return ferr
			}
			docs = append(docs, []byte(doc))
		}
		if _, err := ApplyPolicyFile(ctx, st, bytes.Join(docs, []byte("\n---\n"))); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	if _, err := WaitEnforced(ctx, st); err != nil {
		return err
	}
	return nil
}

// caseTable is a matrix over the case's pods: rows from, columns to; .
// reached, X not.
func caseTable(pods []string, ok func(from, to string) bool) string {
	var b strings.Builder
	w := 0
	for _, p := range pods {
		w = max(w, len(p))
	}
	fmt.Fprintf(&b, "  %-*s", w, "")
	for _, t := range pods {
		fmt.Fprintf(&b, " %-*s", w, t)
	}
	b.WriteString("\n")
	for _, f := range pods {
		fmt.Fprintf(&b, "  %-*s", w, f)
		for _, t := range pods {
			mark := "X"
			if ok(f, t) {
				mark = "."
			}
			fmt.Fprintf(&b, " %-*s", w, mark)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// PolicyCaseSummary is one line on a run: how many cases pass, of how
// many probed, and how many only had their policies enforced.
func PolicyCaseSummary(rs []PolicyCaseResult) string {
	var pass, probed, only int
	for _, r := range rs {
		if r.Compared == 0 && r.Error == "" {
			only++
			continue
		}
		probed++
		if r.Pass {
			pass++
		}
	}
	s := fmt.Sprintf("%d of %d probed cases pass", pass, probed)
	if only > 0 {
		s += fmt.Sprintf("; %d with every probe left out (policies applied and enforced)", only)
	}
	return s
}
