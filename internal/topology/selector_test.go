package topology

import (
	"testing"
)

func sel(t *testing.T, spec *SelectorSpec) Selector {
	t.Helper()
	var errs errorList
	s := compileSelector(spec, "assignment", &errs)
	if err := errs.err(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSelectorMatches(t *testing.T) {
	type L = map[string]string
	tests := []struct {
		name string
		spec *SelectorSpec
		yes  []L
		no   []L
	}{
		{"nil selects all", nil, []L{nil, {}, {"a": "b"}}, nil},
		{"matchLabels", &SelectorSpec{MatchLabels: L{"zone": "a", "rack": "1"}},
			[]L{{"zone": "a", "rack": "1"}, {"zone": "a", "rack": "1", "x": "y"}},
			[]L{nil, {"zone": "a"}, {"zone": "a", "rack": "2"}, {"zone": "b", "rack": "1"}}},
		{"empty label value", &SelectorSpec{MatchLabels: L{"edge": ""}},
			[]L{{"edge": ""}}, []L{{}, {"edge": "x"}}},
		{"In", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "In", Values: []string{"1", "2"}}}},
			[]L{{"rack": "1"}, {"rack": "2"}}, []L{{}, {"rack": "3"}, {"Rack": "1"}}},
		{"NotIn", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "NotIn", Values: []string{"1", "2"}}}},
			[]L{{}, {"rack": "3"}, {"other": "1"}}, []L{{"rack": "1"}, {"rack": "2"}}},
		{"Exists", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "gpu", Operator: "Exists"}}},
			[]L{{"gpu": ""}, {"gpu": "a100"}}, []L{{}, {"GPU": "x"}}},
		{"DoesNotExist", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "gpu", Operator: "DoesNotExist"}}},
			[]L{{}, {"cpu": "x"}}, []L{{"gpu": ""}, {"gpu": "x"}}},
		{"all together", &SelectorSpec{
			MatchLabels: L{"topology.kubernetes.io/zone": "us-east-1a"},
			MatchExpressions: []RequirementSpec{
				{Key: "rack", Operator: "In", Values: []string{"1", "2"}},
				{Key: "maintenance", Operator: "DoesNotExist"},
				{Key: "tier", Operator: "NotIn", Values: []string{"edge"}},
				{Key: "terrane.io/node", Operator: "Exists"},
			}},
			[]L{{"topology.kubernetes.io/zone": "us-east-1a", "rack": "2", "terrane.io/node": "y"}},
			[]L{
				{"topology.kubernetes.io/zone": "us-east-1a", "rack": "2"},
				{"topology.kubernetes.io/zone": "us-east-1a", "rack": "2", "terrane.io/node": "y", "maintenance": ""},
				{"topology.kubernetes.io/zone": "us-east-1a", "rack": "2", "terrane.io/node": "y", "tier": "edge"},
				{"topology.kubernetes.io/zone": "us-east-1b", "rack": "2", "terrane.io/node": "y"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sel(t, tt.spec)
			for _, l := range tt.yes {
				if !s.Matches(l) {
					t.Errorf("%q does not match %v, want it to", s, l)
				}
			}
			for _, l := range tt.no {
				if s.Matches(l) {
					t.Errorf("%q matches %v, want it not to", s, l)
				}
			}
		})
	}
}

func TestSelectorString(t *testing.T) {
	tests := []struct {
		spec *SelectorSpec
		want string
	}{
		{nil, ""},
		{&SelectorSpec{MatchLabels: map[string]string{"zone": "a", "rack": "1"}}, "rack=1,zone=a"},
		{&SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "rack", Operator: "In", Values: []string{"2", "1"}},
			{Key: "tier", Operator: "NotIn", Values: []string{"edge"}},
			{Key: "gpu", Operator: "Exists"},
			{Key: "maintenance", Operator: "DoesNotExist"},
		}}, "rack in (1,2),tier notin (edge),gpu,!maintenance"},
		{&SelectorSpec{
			MatchLabels:      map[string]string{"zone": "a"},
			MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "In", Values: []string{"1"}}},
		}, "zone=a,rack=1"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := sel(t, tt.spec).String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSelectorLabels: Labels returns labels the selector admits, so that a
// synthetic host built from them joins the group, and reports false when no
// labels can (contradictory requirements).
func TestSelectorLabels(t *testing.T) {
	tests := []struct {
		name string
		spec *SelectorSpec
		ok   bool
	}{
		{"empty", nil, true},
		{"matchLabels", &SelectorSpec{MatchLabels: map[string]string{"zone": "a", "rack": "1"}}, true},
		{"In", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "In", Values: []string{"2", "1"}}}}, true},
		{"NotIn only", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "NotIn", Values: []string{"1"}}}}, true},
		{"Exists and DoesNotExist", &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "gpu", Operator: "Exists"}, {Key: "maintenance", Operator: "DoesNotExist"},
		}}, true},
		{"In overlapping matchLabels", &SelectorSpec{
			MatchLabels:      map[string]string{"rack": "2"},
			MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "In", Values: []string{"1", "2"}}},
		}, true},
		{"narrowing Ins in either order", &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "rack", Operator: "In", Values: []string{"1", "2"}}, {Key: "rack", Operator: "In", Values: []string{"2", "3"}},
		}}, true},
		{"In minus NotIn", &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "rack", Operator: "In", Values: []string{"1", "2"}}, {Key: "rack", Operator: "NotIn", Values: []string{"1"}},
		}}, true},
		{"Exists minus NotIn", &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "gpu", Operator: "Exists"}, {Key: "gpu", Operator: "NotIn", Values: []string{"true", "true1"}},
		}}, true},
		{"In and NotIn of the same value", &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "rack", Operator: "In", Values: []string{"1"}}, {Key: "rack", Operator: "NotIn", Values: []string{"1"}},
		}}, false},
		{"Exists and DoesNotExist of one key", &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: "gpu", Operator: "Exists"}, {Key: "gpu", Operator: "DoesNotExist"},
		}}, false},
		{"two disjoint Ins", &SelectorSpec{
			MatchLabels:      map[string]string{"rack": "1"},
			MatchExpressions: []RequirementSpec{{Key: "rack", Operator: "In", Values: []string{"2"}}},
		}, false},
		{"romana dummy", &SelectorSpec{MatchExpressions: []RequirementSpec{{Key: "terrane.io/romana-dummy", Operator: "Exists"}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sel(t, tt.spec)
			labels, ok := s.Labels()
			if ok != tt.ok {
				t.Fatalf("Labels() ok = %v, want %v (labels %v)", ok, tt.ok, labels)
			}
			if ok && !s.Matches(labels) {
				t.Errorf("%q does not match its own Labels() %v", s, labels)
			}
		})
	}
}

// TestSelectorLabelsInTree: the labels of every leaf's selectors, top to
// bottom, admit a host to that leaf, in every example.
func TestSelectorLabelsInTree(t *testing.T) {
	for _, name := range exampleNames(t) {
		top := mustLoad(t, readFile(t, examplesDir+"/"+name+".yaml"))
		for _, tr := range top.Trees {
			for _, leaf := range tr.Leaves {
				labels := map[string]string{}
				for _, g := range append([]*Group{leaf}, leaf.Ancestors()...) {
					l, ok := g.Selector.Labels()
					if !ok {
						t.Fatalf("%s: %s: no labels satisfy %q", name, g.Path, g.Selector)
					}
					for k, v := range l {
						labels[k] = v
					}
				}
				if !leaf.Admits(labels) {
					t.Errorf("%s: %s does not admit %v", name, leaf.Path, labels)
				}
				for _, other := range tr.Leaves {
					if other != leaf && other.Admits(labels) && other.Specificity >= leaf.Specificity {
						t.Errorf("%s: %v also admitted by %s, as specific as %s", name, labels, other.Path, leaf.Path)
					}
				}
			}
		}
	}
}
