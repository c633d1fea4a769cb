package lab

import (
	"context"
	"errors"
)

// errNoRealKubelet: this build runs only the lab kubelet.
var errNoRealKubelet = errors.New("--kubelet real: not available in this build; use --kubelet lab (the default: the lab wires Pods itself, in seconds)")

// realKubeletAvailable reports whether `--kubelet real` can run here (the
// binaries it needs, containerd), before the lab builds anything.
func realKubeletAvailable() error { return errNoRealKubelet }

// startRealKubelets starts a kubelet and a containerd per host, each in
// the host's namespace, registering the host's Node, and returns once
// every Node is Ready. Pods then get their network from the host's
// terrane-cni through containerd, in a namespace containerd makes; each
// pod must still be recorded in st.Pods with its Netns path, so that
// `lab status` and `lab probe` reach it the same way.
func startRealKubelets(ctx context.Context, st *State, progress func(string, ...any)) error {
	return errNoRealKubelet
}
