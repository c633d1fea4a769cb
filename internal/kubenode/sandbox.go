package kubenode

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Sandbox is a pod's sandbox as containerd's CRI made it.
type Sandbox struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	UID       string `json:"uid"`
	// Netns is the path of the pod's network namespace
	// (/var/run/netns/cni-…), the one the CNI plugin wired.
	Netns string `json:"netns"`
}

// Sandboxes lists the node's pod sandboxes from containerd.
func (n *Node) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	return Sandboxes(ctx, n.opts.Ctr, n.opts.ContainerdSocket())
}

// Sandboxes lists the pod sandboxes of the containerd at socket (ctr is
// its client, "" for the one on PATH).
func Sandboxes(ctx context.Context, ctr, socket string) ([]Sandbox, error) {
	if ctr == "" {
		ctr = "ctr"
	}
	out, err := ctrCmd(ctx, ctr, socket, "containers", "ls", "-q", `labels."io.cri-containerd.kind"==sandbox`)
	if err != nil {
		return nil, err
	}
	var sbs []Sandbox
	for _, id := range strings.Fields(string(out)) {
		info, err := ctrCmd(ctx, ctr, socket, "containers", "info", id)
		if err != nil {
			// Removed between the list and now.
			continue
		}
		var c struct {
			Labels map[string]string `json:"Labels"`
			Spec   struct {
				Linux struct {
					Namespaces []struct {
						Type string `json:"type"`
						Path string `json:"path"`
					} `json:"namespaces"`
				} `json:"linux"`
			} `json:"Spec"`
		}
		if err := json.Unmarshal(info, &c); err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		sb := Sandbox{ID: id, Namespace: c.Labels["io.kubernetes.pod.namespace"], Pod: c.Labels["io.kubernetes.pod.name"], UID: c.Labels["io.kubernetes.pod.uid"]}
		for _, ns := range c.Spec.Linux.Namespaces {
			if ns.Type == "network" {
				sb.Netns = ns.Path
			}
		}
		sbs = append(sbs, sb)
	}
	return sbs, nil
}

// PodManifest is a Pod (JSON, which kubectl and the API read as YAML) of
// the lab's pod image bound to node: no scheduler needed, no image pulled,
// no service account token mounted.
func PodManifest(namespace, name, node string, annotations map[string]string) string {
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"namespace": namespace, "name": name, "labels": map[string]string{"app.kubernetes.io/managed-by": "terrane-lab"}, "annotations": annotations},
		"spec": map[string]any{
			"nodeName":                      node,
			"automountServiceAccountToken":  false,
			"enableServiceLinks":            false,
			"terminationGracePeriodSeconds": 2,
			"containers": []any{map[string]any{
				"name":            "pod",
				"image":           PodImage,
				"imagePullPolicy": "Never",
				"ports":           []any{map[string]any{"containerPort": PodPort, "protocol": "TCP"}},
			}},
		},
	}
	b, _ := json.MarshalIndent(pod, "", "  ")
	return string(b) + "\n"
}
