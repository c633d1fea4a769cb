// Package labkube is the lab's side of the Kubernetes API: the Node objects
// of the lab's hosts, the Pod objects of its pods, and the lab kubelet that
// wires Pods bound to the lab's hosts as a kubelet and a container runtime
// would. It is the lab's only importer of client-go (internal/archtest
// enforces it); the wiring itself (pod namespaces, libcni, state.json) is
// internal/lab's, behind the Wirer interface.
package labkube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// PodImage is the image of a lab Pod's one container: nothing pulls or
// runs it (the lab kubelet makes only the pod's network namespace).
const PodImage = "terrane.io/lab-pod:none"

// NewClient is a clientset for a kubeconfig file.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rc.QPS, rc.Burst = 100, 200
	return kubernetes.NewForConfig(rc)
}

// NodeSpec is a lab host as a Node.
type NodeSpec struct {
	Name string
	IP   netip.Addr
	// IP6 is a dual-stack host's IPv6 address: a second InternalIP, as a
	// dual-stack kubelet reports it.
	IP6    netip.Addr
	Labels map[string]string
}

// EnsureNode creates the host's Node (or updates its labels) and sets its
// status: the host's address as InternalIP and a Ready condition, as a
// kubelet registering would.
func EnsureNode(ctx context.Context, cs kubernetes.Interface, spec NodeSpec) error {
	labels := map[string]string{"kubernetes.io/hostname": spec.Name, "kubernetes.io/os": "linux"}
	maps.Copy(labels, spec.Labels)
	node, err := cs.CoreV1().Nodes().Get(ctx, spec.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		node, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: labels}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create node %s: %w", spec.Name, err)
		}
	case err != nil:
		return fmt.Errorf("read node %s: %w", spec.Name, err)
	default:
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		maps.Copy(node.Labels, labels)
		if node, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update node %s: %w", spec.Name, err)
		}
	}
	now := metav1.Now()
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: spec.IP.String()}}
	if spec.IP6.IsValid() {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: spec.IP6.String()})
	}
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: spec.Name})
	node.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "terrane-lab", ContainerRuntimeVersion: "terrane-lab://netns",
		OperatingSystem: "linux", Architecture: runtime.GOARCH, OSImage: "terrane lab host (network namespace)"}
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "TerraneLab",
		Message: "a terrane lab host (a network namespace)", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", spec.Name, err)
	}
	return nil
}

// EnsureNamespace creates a namespace unless it exists.
func EnsureNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// PodSpec is a lab pod as a Pod bound to its host.
type PodSpec struct {
	Name, Namespace, Node string
	Annotations           map[string]string
	// Labels join the lab's own; Ports become the container's ports (named
	// ports for policy).
	Labels map[string]string
	Ports  []Port
	// Image is the container's image (default PodImage, which only the
	// lab kubelet runs; real kubelets run an image imported locally).
	Image string
}

// CreatePod creates the pod's namespace if needed and the Pod, bound to
// its node (no scheduler runs).
func CreatePod(ctx context.Context, cs kubernetes.Interface, spec PodSpec) error {
	_, err := CreatePodUID(ctx, cs, spec)
	return err
}

// CreatePodUID is CreatePod that also returns the Pod's UID (a kubelet's
// K8S_POD_UID).
func CreatePodUID(ctx context.Context, cs kubernetes.Interface, spec PodSpec) (string, error) {
	if err := EnsureNamespace(ctx, cs, spec.Namespace); err != nil {
		return "", err
	}
	no := false
	image := spec.Image
	if image == "" {
		image = PodImage
	}
	labels := map[string]string{"app.kubernetes.io/managed-by": "terrane-lab"}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Namespace: spec.Namespace, Annotations: spec.Annotations, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                     spec.Node,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "pod", Image: image, ImagePullPolicy: corev1.PullNever, Ports: containerPorts(spec.Ports)}},
		},
	}
	made, err := cs.CoreV1().Pods(spec.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	return string(made.UID), nil
}

// DeletePodsNow deletes a namespace's Pods that match a label selector at
// once (grace period 0), as a force delete does: for Pods no kubelet tears
// down.
func DeletePodsNow(ctx context.Context, cs kubernetes.Interface, namespace, selector string) error {
	zero := int64(0)
	if err := cs.CoreV1().Pods(namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
		metav1.ListOptions{LabelSelector: selector}); err != nil {
		return fmt.Errorf("delete pods %s in %s: %w", selector, namespace, err)
	}
	return nil
}

// ErrPodFailed: the kubelet could not start the pod.
var ErrPodFailed = errors.New("pod failed")

// WaitPodRunning waits until the pod is Running with an address, or has
// failed (its status message says why).
func WaitPodRunning(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*corev1.Pod, error) {
	var last string
	for {
		pod, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err.Error()
		case pod.Status.Phase == corev1.PodFailed:
			return pod, fmt.Errorf("%w: pod %s/%s: %s", ErrPodFailed, namespace, name, pod.Status.Message)
		case pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "":
			return pod, nil
		default:
			last = fmt.Sprintf("phase %q", pod.Status.Phase)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pod %s/%s not running (%s): %w; is the lab kubelet running (DIR/logs/kubelet.log)?", namespace, name, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DeletePod deletes a Pod gracefully (the lab kubelet tears it down, then
// the object goes) and waits until it is gone.
func DeletePod(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	err := cs.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	for {
		_, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s still terminating: %w; is the lab kubelet running (DIR/logs/kubelet.log)?", namespace, name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
