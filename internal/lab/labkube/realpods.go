package labkube

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RunningPod is a Pod a real kubelet runs: Running, with its addresses.
type RunningPod struct {
	PodRef
	IPs []netip.Addr
}

// RunningPods lists the Pods bound to one of nodes that are Running with
// an address (what a real kubelet reports once the sandbox is wired).
func RunningPods(ctx context.Context, cs kubernetes.Interface, nodes map[string]bool) ([]RunningPod, error) {
	list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var out []RunningPod
	for _, p := range list.Items {
		if !nodes[p.Spec.NodeName] || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		rp := RunningPod{PodRef: PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName, Annotations: p.Annotations}}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				rp.IPs = append(rp.IPs, a)
			}
		}
		if len(rp.IPs) > 0 {
			out = append(out, rp)
		}
	}
	return out, nil
}
