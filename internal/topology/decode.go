package topology

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds what Parse accepts; a topology is a few kilobytes.
const MaxFileSize = 4 << 20

// Parse reads a topology file in Terrane's native format (YAML or JSON) or in
// Romana v2.0's JSON, telling them apart by their fields. Unknown fields and
// values of the wrong type are reported with their paths, all at once.
// Parse checks shape only; Compile checks meaning.
func Parse(data []byte) (*Spec, error) {
	s, unknown, err := parse(data)
	if err != nil {
		return nil, err
	}
	if err := unknown.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// parse is Parse that, when the only problems are unknown fields, also
// returns the spec read without them, so that Load can report them together
// with every other problem.
func parse(data []byte) (*Spec, errorList, error) {
	fail := func(msg string) (*Spec, errorList, error) {
		return nil, nil, &ValidationError{Subject: "topology", Errors: []FieldError{{Path: "", Msg: msg}}}
	}
	if len(data) > MaxFileSize {
		return fail(fmt.Sprintf("file is %d bytes, more than the %d a topology may have", len(data), MaxFileSize))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail("file is empty; a topology needs at least networks and topologies")
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fail("not valid YAML or JSON: " + err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fail("not valid JSON: " + err.Error())
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return fail(fmt.Sprintf("the file must hold an object with networks and topologies, not %s", kindOf(doc)))
	}
	var errs errorList
	romana := isRomana(top)
	if romana {
		checkShape(top, reflect.TypeFor[romanaFile](), "", &errs)
	} else {
		checkShape(top, reflect.TypeFor[Spec](), "", &errs)
	}
	for _, e := range errs {
		if !strings.HasPrefix(e.Msg, unknownFieldMsg) {
			return nil, nil, errs.err() // wrong types: the values cannot be read
		}
	}
	if romana {
		var rf romanaFile
		if err := json.Unmarshal(js, &rf); err != nil {
			return fail(err.Error())
		}
		s, fe := rf.toSpec()
		if len(fe) > 0 {
			return nil, nil, append(errs, fe...).err()
		}
		return s, errs, nil
	}
	var s Spec
	if err := json.Unmarshal(js, &s); err != nil {
		return fail(err.Error())
	}
	s.format = Native
	return &s, errs, nil
}

const unknownFieldMsg = "unknown field"

// isRomana recognises Romana's spelling: block_mask on a network or a map in
// a topology.
func isRomana(top map[string]any) bool {
	if nets, ok := top["networks"].([]any); ok {
		for _, n := range nets {
			if m, ok := n.(map[string]any); ok {
				if _, ok := m["block_mask"]; ok {
					return true
				}
				if _, ok := m["tenants"]; ok {
					return true
				}
			}
		}
	}
	if tops, ok := top["topologies"].([]any); ok {
		for _, t := range tops {
			if m, ok := t.(map[string]any); ok {
				if _, ok := m["map"]; ok {
					return true
				}
			}
		}
	}
	return false
}

// checkShape walks a decoded JSON value beside the Go type it should fill and
// reports unknown fields and wrong types with their paths.
func checkShape(v any, t reflect.Type, path string, errs *errorList) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			errs.add(path, "want an object, got %s", kindOf(v))
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				errs.add(join(path, k), "unknown field; known fields here: %s", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
				continue
			}
			checkShape(m[k], f.Type, join(path, k), errs)
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			errs.add(path, "want a list, got %s", kindOf(v))
			return
		}
		for i, e := range a {
			checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			errs.add(path, "want an object of key: value pairs, got %s", kindOf(v))
			return
		}
		for k, e := range m {
			checkShape(e, t.Elem(), join(path, k), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			errs.add(path, "want a string, got %s (quote it)", kindOf(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			errs.add(path, "want true or false, got %s", kindOf(v))
		}
	case reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			errs.add(path, "want a whole number, got %s", kindOf(v))
			return
		}
		if _, err := n.Int64(); err != nil || strings.ContainsAny(n.String(), ".eE") {
			errs.add(path, "want a whole number, got %s", n.String())
		}
	}
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case json.Number:
		return "number " + x.String()
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
