package topology

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Selector is a compiled label selector; the zero value matches everything.
type Selector struct {
	Requirements []Requirement
}

// Requirement is one label condition.
type Requirement struct {
	Key    string
	Op     Operator
	Values []string
}

// Operator is a matchExpressions operator.
type Operator string

const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.Requirements {
		v, ok := labels[r.Key]
		switch r.Op {
		case OpIn:
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case OpNotIn:
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case OpExists:
			if !ok {
				return false
			}
		case OpDoesNotExist:
			if ok {
				return false
			}
		}
	}
	return true
}

// String renders the selector as kubectl would: "zone=a,rack in (1,2)".
func (s Selector) String() string {
	parts := make([]string, 0, len(s.Requirements))
	for _, r := range s.Requirements {
		switch r.Op {
		case OpIn:
			if len(r.Values) == 1 {
				parts = append(parts, r.Key+"="+r.Values[0])
			} else {
				parts = append(parts, fmt.Sprintf("%s in (%s)", r.Key, strings.Join(r.Values, ",")))
			}
		case OpNotIn:
			parts = append(parts, fmt.Sprintf("%s notin (%s)", r.Key, strings.Join(r.Values, ",")))
		case OpExists:
			parts = append(parts, r.Key)
		case OpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		}
	}
	return strings.Join(parts, ",")
}

// Labels returns labels that satisfy the selector when one exists: what a
// synthetic host needs to join the group. ok is false when no labels do:
// the requirements contradict each other (rack in (1), rack notin (1)).
func (s Selector) Labels() (map[string]string, bool) {
	out := map[string]string{}
	for _, r := range s.Requirements {
		if _, done := out[r.Key]; done {
			continue
		}
		// Try the values an In offers, else (Exists) made-up ones; keep the
		// first that every requirement on the key accepts.
		var cands []string
		switch r.Op {
		case OpIn:
			cands = r.Values
		case OpExists:
			for i := 0; i <= len(s.Requirements); i++ {
				cands = append(cands, fmt.Sprintf("true%.0d", i))
			}
		}
		for _, v := range cands {
			if s.acceptsValue(r.Key, v) {
				out[r.Key] = v
				break
			}
		}
	}
	return out, s.Matches(out)
}

// acceptsValue reports whether every requirement on key holds when the
// label key has value v.
func (s Selector) acceptsValue(key, v string) bool {
	return Selector{Requirements: slices.DeleteFunc(slices.Clone(s.Requirements), func(r Requirement) bool {
		return r.Key != key
	})}.Matches(map[string]string{key: v})
}

var (
	labelNameRe  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$`)
	labelValueRe = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$`)
	dnsPrefixRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
)

// ValidLabelKey reports whether k is a Kubernetes label key: an optional DNS
// prefix and "/", then a name of at most 63 letters, digits, '-', '_', '.'.
func ValidLabelKey(k string) bool {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok {
		return labelNameRe.MatchString(k)
	}
	return dnsPrefixRe.MatchString(prefix) && labelNameRe.MatchString(name)
}

// ValidLabelValue reports whether v is a Kubernetes label value.
func ValidLabelValue(v string) bool { return labelValueRe.MatchString(v) }

// compileSelector checks a selector spec and compiles it; requirements are
// sorted so that equal selectors compare equal.
func compileSelector(s *SelectorSpec, path string, errs *errorList) Selector {
	var out Selector
	if s == nil {
		return out
	}
	keys := slices.Sorted(maps.Keys(s.MatchLabels))
	for _, k := range keys {
		v := s.MatchLabels[k]
		p := join(path, "matchLabels."+k)
		ok := true
		if !ValidLabelKey(k) {
			errs.add(p, "%q is not a valid label key (letters, digits, '-', '_', '.', at most 63, optional DNS prefix and '/')", k)
			ok = false
		}
		if !ValidLabelValue(v) {
			errs.add(p, "%q is not a valid label value (letters, digits, '-', '_', '.', at most 63)", v)
			ok = false
		}
		if ok {
			out.Requirements = append(out.Requirements, Requirement{Key: k, Op: OpIn, Values: []string{v}})
		}
	}
	for i, e := range s.MatchExpressions {
		p := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		if !ValidLabelKey(e.Key) {
			errs.add(p+".key", "%q is not a valid label key", e.Key)
			continue
		}
		op := Operator(e.Operator)
		switch op {
		case OpIn, OpNotIn:
			if len(e.Values) == 0 {
				errs.add(p+".values", "operator %s needs at least one value", op)
				continue
			}
			bad := false
			for j, v := range e.Values {
				if !ValidLabelValue(v) {
					errs.add(fmt.Sprintf("%s.values[%d]", p, j), "%q is not a valid label value", v)
					bad = true
				}
			}
			if bad {
				continue
			}
		case OpExists, OpDoesNotExist:
			if len(e.Values) != 0 {
				errs.add(p+".values", "operator %s takes no values; remove them", op)
				continue
			}
		default:
			errs.add(p+".operator", "%q is not an operator; use In, NotIn, Exists or DoesNotExist", e.Operator)
			continue
		}
		vals := slices.Clone(e.Values)
		sort.Strings(vals)
		out.Requirements = append(out.Requirements, Requirement{Key: e.Key, Op: op, Values: vals})
	}
	return out
}
