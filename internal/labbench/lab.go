package labbench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/meter"
)

// LabOptions say which lab a benchmark builds and with which binaries.
type LabOptions struct {
	// Name is the bench lab's name (lab.ValidateName); Dir its directory
	// (default lab.DefaultDir(Name)).
	Name, Dir string
	// Terrane is the terrane binary the lab runs; PluginDir holds
	// terrane-cni (default: Terrane's directory).
	Terrane, PluginDir string
	// Progress receives progress lines; nil discards them.
	Progress func(format string, args ...any)
	// Meter, when set, follows the lab's start and then the benchmark's
	// rounds (a progress bar on a terminal).
	Meter lab.Meter
	// AgentArgs are extra flags for the lab's agents.
	AgentArgs []string
}

func (o LabOptions) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(format, args...)
	}
}

// meter is o.Meter, or one that counts nothing.
func (o LabOptions) meter() lab.Meter { return meter.Or(o.Meter) }

func (o LabOptions) names() lab.Names {
	n := lab.Names{Lab: o.Name, Dir: o.Dir}
	if n.Dir == "" {
		n.Dir = lab.DefaultDir(o.Name)
	}
	return n
}

// takeDown removes the bench lab (lab.Down) and says what it removed, or
// how to remove what it could not.
func (o LabOptions) takeDown() {
	// A fresh context: the benchmark's may be cancelled (Ctrl-C).
	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := lab.Down(dctx, lab.DownOptions{Name: o.Name, Dir: o.Dir})
	if err != nil {
		o.progress("lab down %s: %v (run `terrane lab down --name %s`)", o.Name, err, o.Name)
		return
	}
	o.progress("lab %s removed: %d processes stopped, %d namespaces deleted", o.Name, len(rep.Killed), len(rep.Netns))
}

// upLab builds the bench lab of scenario (YAML). down removes it and
// everything the benchmark added to it; it is non-nil whenever the lab
// may exist, also when err is not.
func upLab(ctx context.Context, o LabOptions, scenario string) (st *lab.State, down func(), err error) {
	return upLabWith(ctx, o, scenario, nil)
}

// upLabWith is upLab with more lab options (e.g. --k8s) set by with.
func upLabWith(ctx context.Context, o LabOptions, scenario string, with func(*lab.UpOptions)) (st *lab.State, down func(), err error) {
	if err := lab.CheckEnvironment(); err != nil {
		return nil, nil, err
	}
	sc, err := lab.ParseScenario([]byte(scenario))
	if err != nil {
		return nil, nil, fmt.Errorf("bench scenario: %w", err)
	}
	down = o.takeDown
	up := lab.UpOptions{Name: o.Name, Dir: o.Dir, Scenario: sc, Terrane: o.Terrane, PluginDir: o.PluginDir, AgentArgs: o.AgentArgs,
		Progress: func(format string, args ...any) { o.progress("lab: "+format, args...) }, Meter: o.Meter}
	if with != nil {
		with(&up)
	}
	st, err = lab.Up(ctx, up)
	if err != nil {
		if errors.Is(err, lab.ErrExists) {
			return nil, nil, err // not ours to remove
		}
		return nil, down, err
	}
	return st, down, nil
}
