package lab

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/kubenode"
	"github.com/terrane-net/terrane/internal/lab/labkube"
)

// The pod recorder keeps the lab's pods equal to the running Pods: a new
// one with containerd's namespace, a deleted one forgotten, a Pod
// recreated under its name replaced, a name taken by another running Pod
// or by a VM refused with the reason.
func TestSyncRealPods(t *testing.T) {
	n := Names{Lab: "t", Dir: t.TempDir()}
	sc := &Scenario{Hosts: []Host{{Name: "host-1"}, {Name: "host-2"}}}
	st := &State{Name: n.Lab, Dir: n.Dir, Scenario: sc, Kube: &KubeState{Kubelet: KubeletReal},
		Pods: []PodState{
			{Pod: Pod{Name: "web", Host: "host-1", Namespace: "default"}, Netns: "cni-web", UID: "u-web"},
			{Pod: Pod{Name: "old", Host: "host-2", Namespace: "default"}, Netns: "cni-old", UID: "u-old"},
			{Pod: Pod{Name: "again", Host: "host-2", Namespace: "default"}, Netns: "cni-again1", UID: "u-again1"},
		},
		VMs: []VMState{{VM: VM{Name: "vm1", Host: "host-1"}}},
	}
	sc.Pods = []Pod{st.Pods[0].Pod, st.Pods[1].Pod, st.Pods[2].Pod}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	pod := func(ns, name, uid, node, ip string) labkube.RunningPod {
		return labkube.RunningPod{PodRef: labkube.PodRef{Namespace: ns, Name: name, UID: uid, Node: node}, IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	running := []labkube.RunningPod{
		pod("default", "web", "u-web", "host-1", "10.0.0.1"),
		pod("other", "web", "u-web2", "host-2", "10.0.0.2"),       // name taken
		pod("default", "new", "u-new", "host-2", "10.0.0.3"),      // new
		pod("default", "again", "u-again2", "host-2", "10.0.0.4"), // recreated
		pod("default", "vm1", "u-vm1", "host-1", "10.0.0.5"),      // a VM's name
		pod("default", "early", "u-early", "host-1", "10.0.0.6"),  // no sandbox yet
	}
	src := realPodSource{
		list: func(context.Context) ([]labkube.RunningPod, error) { return running, nil },
		sandboxes: func(_ context.Context, host string) ([]kubenode.Sandbox, error) {
			return []kubenode.Sandbox{
				{ID: "sb-new", UID: "u-new", Netns: "/var/run/netns/cni-new"},
				{ID: "sb-again", UID: "u-again2", Netns: "/var/run/netns/cni-again2"},
				{ID: "sb-web2", UID: "u-web2", Netns: "/var/run/netns/cni-web2"},
			}, nil
		},
	}
	err := syncRealPods(context.Background(), n.Lab, n.Dir, src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, want := range []string{`pod other/web: the lab names pods by name alone and "web" is pod default/web's`, `"vm1" is a lab VM's name`, "pod default/early: no sandbox"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sync error %v, want it to say %q", err, want)
		}
	}
	got, err := LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got.Pods {
		names = append(names, p.Namespace+"/"+p.Name+"@"+p.Netns+"="+p.Addr().String())
	}
	want := "default/web@cni-web=invalid IP default/new@cni-new=10.0.0.3 default/again@cni-again2=10.0.0.4"
	if strings.Join(names, " ") != want {
		t.Errorf("recorded pods:\n %s\nwant\n %s", strings.Join(names, " "), want)
	}
	var scenario []string
	for _, p := range got.Scenario.Pods {
		scenario = append(scenario, p.Name)
	}
	if strings.Join(scenario, " ") != "web again new" {
		t.Errorf("scenario pods %v, want web again new", scenario)
	}
	if p, _ := got.Pod("new"); p.ContainerID != "sb-new" || p.Host != "host-2" || p.IfName != "eth0" || p.UID != "u-new" {
		t.Errorf("pod new recorded as %+v", p)
	}
}
