package kubernetes

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/k8stest"
)

// TestRenderedManifestIsCurrent: terrane.yaml is exactly what the
// kustomization renders, so the kustomization stays the one source.
func TestRenderedManifestIsCurrent(t *testing.T) {
	if _, err := os.Stat(k8stest.BinDir() + "/kubectl"); err != nil {
		t.Fatalf("no kubectl in %s: build it with `%s`", k8stest.BinDir(), k8stest.BuildCommand)
	}
	cmd := exec.Command("bash", "../../scripts/render-manifest.sh", "--check")
	cmd.Env = append(os.Environ(), "KUBECTL="+k8stest.BinDir()+"/kubectl")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/kubernetes/terrane.yaml is stale: %v\n%s", err, out)
	}
}

// objects splits terrane.yaml into its documents, by kind/name.
func objects(t *testing.T) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile("terrane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		out[meta.Kind+"/"+meta.Metadata.Name] = doc
	}
	return out
}

// TestManifestShape checks what the install depends on and an API server
// would not refuse: host networking, tolerations, the agent's token and
// mounts, the server's probes and spread.
func TestManifestShape(t *testing.T) {
	objs := objects(t)
	for _, want := range []string{"Namespace/terrane-system", "CustomResourceDefinition/storerecords.terrane.io",
		"ServiceAccount/terrane-server", "ServiceAccount/terrane-agent", "ClusterRole/terrane-server", "Role/terrane-server",
		"Role/terrane-store", "Service/terrane-server", "Deployment/terrane-server", "PodDisruptionBudget/terrane-server",
		"ConfigMap/terrane-topology", "DaemonSet/terrane-agent"} {
		if objs[want] == nil {
			t.Errorf("terrane.yaml has no %s", want)
		}
	}
	for k := range objs {
		if (strings.HasPrefix(k, "RoleBinding/") || strings.HasPrefix(k, "ClusterRoleBinding/")) && k != "ClusterRoleBinding/terrane-agent" {
			if bytes.Contains(objs[k], []byte("terrane-agent")) {
				t.Errorf("%s grants the agents' ServiceAccount a role beyond reading policy's inputs", k)
			}
		}
	}
	// The agents only read what policy needs from the API.
	var agentRole rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(objs["ClusterRole/terrane-agent"], &agentRole); err != nil {
		t.Fatal(err)
	}
	for _, r := range agentRole.Rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("the agents' ClusterRole may %s %v: agents write nothing to the Kubernetes API", v, r.Resources)
			}
		}
	}

	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(objs["DaemonSet/terrane-agent"], &ds); err != nil {
		t.Fatal(err)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.PriorityClassName != "system-node-critical" || pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("agent pod: hostNetwork %v, priority %q, automount %v", pod.HostNetwork, pod.PriorityClassName, pod.AutomountServiceAccountToken)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("agent tolerations %+v, want one that tolerates every taint", pod.Tolerations)
	}
	var audience string
	for _, v := range pod.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					audience = s.ServiceAccountToken.Audience
				}
			}
		}
	}
	if audience != "terrane" {
		t.Errorf("agent token audience %q, want terrane", audience)
	}
	if len(pod.InitContainers) != 1 || !slices.Contains(pod.InitContainers[0].Args, "--install-cni") {
		t.Errorf("agent init containers %+v, want one running agent --install-cni", pod.InitContainers)
	}
	agent := pod.Containers[0]
	for _, arg := range agent.Args {
		if strings.HasPrefix(arg, "--labels") {
			t.Errorf("the agent registers with %s: the Node controller owns labels", arg)
		}
	}
	var mounts []string
	for _, m := range agent.VolumeMounts {
		mounts = append(mounts, m.MountPath)
	}
	slices.Sort(mounts)
	if want := []string{"/etc/terrane/ca", "/run/netns", "/run/terrane", "/var/lib/terrane", "/var/run/netns", "/var/run/secrets/terrane"}; !slices.Equal(mounts, want) {
		t.Errorf("agent mounts %v, want %v", mounts, want)
	}

	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(objs["Deployment/terrane-server"], &dep); err != nil {
		t.Fatal(err)
	}
	sp := dep.Spec.Template.Spec
	if *dep.Spec.Replicas != 2 || !sp.HostNetwork || len(sp.TopologySpreadConstraints) == 0 || sp.Affinity == nil || sp.Affinity.PodAntiAffinity == nil {
		t.Errorf("server: replicas %d, hostNetwork %v, spread %v, affinity %+v", *dep.Spec.Replicas, sp.HostNetwork, sp.TopologySpreadConstraints, sp.Affinity)
	}
	srv := sp.Containers[0]
	if srv.ReadinessProbe == nil || srv.LivenessProbe == nil || srv.Resources.Requests.Cpu().IsZero() {
		t.Errorf("server container: readiness %v, liveness %v, requests %v", srv.ReadinessProbe, srv.LivenessProbe, srv.Resources.Requests)
	}
	sc := srv.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("server securityContext %+v", sc)
	}
	tolerates := func(key string) bool {
		return slices.ContainsFunc(sp.Tolerations, func(t corev1.Toleration) bool { return t.Key == key })
	}
	if !tolerates("node-role.kubernetes.io/control-plane") || !tolerates("node.kubernetes.io/not-ready") {
		t.Errorf("server tolerations %+v: it must run on control-plane nodes and on nodes not ready for want of a network", sp.Tolerations)
	}
}
