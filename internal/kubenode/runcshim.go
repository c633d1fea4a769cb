package kubenode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// RuncShimArgs are the terrane arguments that run RuncShim; the wrapper
// script containerd runs as runc is `terrane <RuncShimArgs> RUNC ARGS...`.
var RuncShimArgs = []string{"lab", "runc-shim"}

// RuncShim runs runc with args after setting a negative
// .process.oomScoreAdj to 0 in the OCI bundle's config.json (for
// `create` and `run`) or in the process file (for `exec --process`).
//
// The kubelet asks for -998 for sandboxes and other negative scores for
// guaranteed pods; lowering a score needs CAP_SYS_RESOURCE, which a
// container (a CI runner, a development container) may not have, and then
// runc's init dies writing /proc/self/oom_score_adj and runc reports only
// "can't get final child's PID from pipe: EOF". A score of 0 changes
// nothing but which process the OOM killer prefers.
func RuncShim(runc string, args []string) error {
	if f := specFile(args); f != "" {
		if err := clampOOMScoreAdj(f); err != nil {
			return fmt.Errorf("runc shim: %s: %w", f, err)
		}
	}
	return syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
}

// specFile finds the JSON runc reads the process from: the bundle's
// config.json for create and run, --process for exec.
func specFile(args []string) string {
	cmd, bundle, process := "", ".", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "--bundle" || a == "-b":
			bundle = val()
		case len(a) > 9 && a[:9] == "--bundle=":
			bundle = a[9:]
		case a == "--process" || a == "-p":
			process = val()
		case len(a) > 10 && a[:10] == "--process=":
			process = a[10:]
		// runc's global flags with a value, before the command.
		case cmd == "" && (a == "--root" || a == "--log" || a == "--log-format" || a == "--criu"):
			val()
		case cmd == "" && len(a) > 0 && a[0] != '-':
			cmd = a
		}
	}
	switch cmd {
	case "create", "run":
		return filepath.Join(bundle, "config.json")
	case "exec":
		return process
	}
	return ""
}

// clampOOMScoreAdj rewrites the file with a negative oomScoreAdj (at the
// top level of a process file, or under .process of a bundle config) set
// to 0, keeping every other field as it was.
func clampOOMScoreAdj(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	changed := false
	clamp := func(obj map[string]json.RawMessage) error {
		raw, ok := obj["oomScoreAdj"]
		if !ok {
			return nil
		}
		var v int
		if err := json.Unmarshal(raw, &v); err != nil {
			return errors.New("oomScoreAdj is not a number")
		}
		if v < 0 {
			obj["oomScoreAdj"] = json.RawMessage("0")
			changed = true
		}
		return nil
	}
	if raw, ok := doc["process"]; ok {
		var proc map[string]json.RawMessage
		if err := json.Unmarshal(raw, &proc); err != nil {
			return err
		}
		if err := clamp(proc); err != nil {
			return err
		}
		if changed {
			if doc["process"], err = json.Marshal(proc); err != nil {
				return err
			}
		}
	} else if err := clamp(doc); err != nil {
		return err
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".terrane-tmp"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
