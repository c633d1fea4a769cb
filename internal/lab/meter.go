package lab

import (
	"time"

	"github.com/terrane-net/terrane/internal/meter"
)

// Meter follows a long run (meter.Meter): internal/progress draws it as a
// bar, or as plain lines when stderr is not a terminal.
type Meter = meter.Meter

// upMeter turns Up's steps into a Meter's units: each step is one unit,
// done when the next begins (the last when Up returns), and each pod made
// through libcni one more. Without a Meter, a step is a progress line as
// before, with the seconds since Up began.
type upMeter struct {
	m        Meter
	progress func(string, ...any)
	start    time.Time
	open     bool // a step is running: the next one finishes it
}

// step begins a step, finishing the one before.
func (u *upMeter) step(format string, args ...any) {
	if u.m == nil {
		u.note(format, args...)
		return
	}
	if u.open {
		u.m.Add(1)
	}
	u.open = true
	u.m.Step(format, args...)
}

// note is a line within a step: the steps of a build of the Kubernetes
// binaries, a node's kubelet ready.
func (u *upMeter) note(format string, args ...any) {
	u.progress("[%5.1fs] "+format, append([]any{time.Since(u.start).Seconds()}, args...)...)
}

// add counts n units done within a step (pods).
func (u *upMeter) add(n int) {
	if u.m != nil {
		u.m.Add(n)
	}
}

// finish counts the last step done.
func (u *upMeter) finish() {
	if u.m != nil && u.open {
		u.m.Add(1)
		u.open = false
	}
}

// upUnits is how many units Up counts for st: one per step it will take
// (the conditions mirror Up's and buildInfrastructure's) and one per pod
// it makes through libcni. TestPrivileged* runs check that a run ends at
// exactly this total.
func upUnits(st *State, infraOnly bool) int {
	sc := st.Scenario
	n := 3 // namespaces, segments, addresses
	if sc.StaticRouters() {
		n++ // the routers' underlay routes
	}
	if infraOnly {
		return n
	}
	if sc.BGPRouters() {
		n++ // BIRD
	}
	if _, ok := sc.VPCRouter(); ok {
		n++ // vpcd
	}
	n += 2 // the server; the topology
	if st.Kube != nil {
		n += 2 // etcd and kube-apiserver; the Nodes
	}
	n += 2 // agents started; agents ready
	if sc.StaticRouters() {
		n++ // fabricd
	}
	if st.Kube != nil {
		if st.Kube.Kubelet != KubeletNone {
			n++
		}
		if len(sc.Namespaces)+len(sc.Policies) > 0 {
			n++
		}
		if len(sc.Pods) > 0 {
			n++
		}
	} else if st.Policy == PolicyServer || len(sc.Pods) > 0 {
		if st.Policy == PolicyServer {
			n++
		}
		n += 1 + len(sc.Pods) // the step, then each pod
	}
	n++ // waiting for the routers
	if st.Policy != "" {
		n++ // waiting for enforcement
	}
	return n + 1 // the lab is up
}
