// Package kube connects the Terrane server to the Kubernetes cluster it
// serves, through client-go (the only importer besides the Kubernetes store
// and the test harness):
//
//   - TokenReview authenticates agents by their projected ServiceAccount
//     tokens: the API server verifies a token, and the node its pod runs on
//     (the token's node claim) becomes the caller's node identity;
//   - NodeController keeps one host per Node: its labels place it in the
//     topology, its InternalIP is the host's address, and a deleted Node's
//     host is removed after a grace period once no address is in use on it;
//   - NamespaceController keeps namespaces' default networks equal to
//     their annotations;
//   - TopologyController applies the topology a ConfigMap holds;
//   - BootstrapPKI keeps the servers' CA in a Secret and issues each
//     server its certificate;
//   - PodController marks the pod addresses whose Pod no longer exists and,
//     after a grace period and a fresh read of the Pod, asks the host's
//     agent to release them;
//   - RunLeader runs a controller only while this server holds a Lease, so
//     one server acts at a time.
//
// The controllers drive the server's state through the same operations as
// the API (server.State); see docs/design/kubernetes.md.
package kube
