package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// NetnsPrefix starts every network namespace any lab creates.
const NetnsPrefix = "terrane-lab-"

// DefaultDirRoot holds each lab's directory by default: /run/terrane-lab/<name>.
const DefaultDirRoot = "/run/terrane-lab"

// labNameRe has no '-': "terrane-lab-<name>-" then names one lab's
// namespaces unambiguously (lab "a" never sweeps lab "a-b"'s).
var labNameRe = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// ValidateName checks a lab name.
func ValidateName(name string) error {
	if !labNameRe.MatchString(name) {
		return fmt.Errorf("lab name %q: use 1 to 16 lowercase letters and digits (no '-': the name is part of every namespace name, terrane-lab-<name>-<node>)", name)
	}
	return nil
}

// DefaultDir is the lab directory of name when --dir is not given.
func DefaultDir(name string) string { return filepath.Join(DefaultDirRoot, name) }

// Names builds the lab's namespace and file names.
type Names struct{ Lab, Dir string }

// Prefix starts every namespace of this lab.
func (n Names) Prefix() string { return NetnsPrefix + n.Lab + "-" }

// Node is the namespace of a host or router.
func (n Names) Node(node string) string { return n.Prefix() + node }

// Fabric is the namespace holding the bridges and the lab's daemons.
func (n Names) Fabric() string { return n.Prefix() + "fabric" }

// Pod is a pod's namespace.
func (n Names) Pod(pod string) string { return n.Prefix() + "pod-" + pod }

// NetnsPath is where `ip netns` mounts a namespace.
func NetnsPath(ns string) string { return "/run/netns/" + ns }

// Files of a lab directory.
func (n Names) State() string             { return filepath.Join(n.Dir, "state.json") }
func (n Names) Lock() string              { return filepath.Join(n.Dir, "lock") }
func (n Names) Logs() string              { return filepath.Join(n.Dir, "logs") }
func (n Names) ServerData() string        { return filepath.Join(n.Dir, "server") }
func (n Names) ServerSocket() string      { return filepath.Join(n.Dir, "server.sock") }
func (n Names) PKI() string               { return filepath.Join(n.ServerData(), "pki") }
func (n Names) CNICache() string          { return filepath.Join(n.Dir, "cni-cache") }
func (n Names) FabricStatus() string      { return filepath.Join(n.Dir, "fabricd.json") }
func (n Names) HostDir(h string) string   { return filepath.Join(n.Dir, "hosts", h) }
func (n Names) RouterDir(r string) string { return filepath.Join(n.Dir, "routers", r) }
func (n Names) BirdConf(r string) string  { return filepath.Join(n.RouterDir(r), "bird.conf") }
func (n Names) BirdCtl(r string) string   { return filepath.Join(n.RouterDir(r), "bird.ctl") }
func (n Names) BirdPID(r string) string   { return filepath.Join(n.RouterDir(r), "bird.pid") }
func (n Names) KubeDir() string           { return filepath.Join(n.Dir, "k8s") }
func (n Names) KubeletReady() string      { return filepath.Join(n.KubeDir(), "kubelet.ready") }
func (n Names) AgentSocket(h string) string {
	return filepath.Join(n.HostDir(h), "agent.sock")
}

// State is what a running lab records in state.json: enough for every
// other command (probe, routes, add-pod, down) to find what up made.
type State struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Terrane and PluginDir are the binaries the lab runs.
	Terrane   string `json:"terrane"`
	PluginDir string `json:"pluginDir,omitempty"`
	// AgentArgs are extra flags the agents run with.
	AgentArgs []string `json:"agentArgs,omitempty"`
	// HostAgentArgs are extra flags of one host's agent, after AgentArgs.
	HostAgentArgs map[string][]string `json:"hostAgentArgs,omitempty"`
	Created       time.Time           `json:"created"`
	Scenario      *Scenario           `json:"scenario"`
	// Netns lists the namespaces made, in order.
	Netns     []string   `json:"netns"`
	Processes []Process  `json:"processes,omitempty"`
	Pods      []PodState `json:"pods,omitempty"`
	// VMs are the VM ports plugged in (AddVM), in the order added.
	VMs []VMState `json:"vms,omitempty"`
	// Kube is the lab's Kubernetes control plane (lab up --k8s): pods are
	// Pod objects, wired by a kubelet.
	Kube *KubeState `json:"kube,omitempty"`
	// Servers are the servers the agents use, when the caller runs the
	// control plane (StartAgents); empty: the lab's own server.
	Servers []string `json:"servers,omitempty"`
	// Policy is where the agents read network policy from:
	// PolicyKubernetes, PolicyServer, or "" (they enforce none).
	Policy string `json:"policy,omitempty"`
}

// Process is one daemon the lab started.
type Process struct {
	Role  string   `json:"role"` // server, agent, fabricd, bird
	Node  string   `json:"node,omitempty"`
	PID   int      `json:"pid"`
	Netns string   `json:"netns"`
	Log   string   `json:"log"`
	Args  []string `json:"args"`
}

// PodState is one pod the lab created.
type PodState struct {
	Pod
	Netns       string `json:"netns"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Addrs are the pod's addresses as the CNI result gave them.
	Addrs []netip.Prefix `json:"addrs"`
	// UID is the Pod object's UID (labs with --k8s).
	UID string `json:"uid,omitempty"`
}

// Addr is the pod's first address.
func (p PodState) Addr() netip.Addr {
	if len(p.Addrs) == 0 {
		return netip.Addr{}
	}
	return p.Addrs[0].Addr()
}

func (s *State) names() Names { return Names{Lab: s.Name, Dir: s.Dir} }

// Pod returns the pod named name.
func (s *State) Pod(name string) (PodState, bool) {
	for _, p := range s.Pods {
		if p.Name == name {
			return p, true
		}
	}
	return PodState{}, false
}

// Save writes state.json atomically.
func (s *State) Save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := s.names().State()
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	return nil
}

// ErrNoLab: no lab of that name is running.
var ErrNoLab = errors.New("no lab is running")

// LoadState reads the state of the lab in dir.
func LoadState(name, dir string) (*State, error) {
	n := Names{Lab: name, Dir: dir}
	b, err := os.ReadFile(n.State())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w named %q (no %s); start one with `terrane lab up --name %s`", ErrNoLab, name, n.State(), name)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", n.State(), err)
	}
	if s.Scenario == nil {
		return nil, fmt.Errorf("lab state %s holds no scenario: the lab did not finish starting; run `terrane lab down --name %s`", n.State(), name)
	}
	return &s, nil
}

// lockState takes the lab's lock and reads its state: what every command
// that changes a running lab starts with. unlock releases the lock; on an
// error it is released already.
func lockState(name, dir string) (st *State, unlock func(), err error) {
	unlock, err = lockDir(Names{Lab: name, Dir: dir})
	if err != nil {
		return nil, nil, err
	}
	if st, err = LoadState(name, dir); err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// lockDir takes the lab directory's lock, serializing the commands that
// change a lab (up, add-pod, del-pod, down, the lab kubelet). The returned
// func releases it.
func lockDir(n Names) (func(), error) {
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab directory: %w", err)
	}
	f, err := os.OpenFile(n.Lock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock lab: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock lab: %w", err)
	}
	// Idempotent: a command may let go early (the lab kubelet needs the
	// lock to record pods) and still defer it.
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}
