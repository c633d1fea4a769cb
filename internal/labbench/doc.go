// Package labbench measures Terrane's pod networking on a lab (internal/lab)
// against what people run instead, in the same run on the same machine:
//
//   - RunCNI: pod ADD and DEL latency of terrane-cni (with its real agent
//     and server) and of the upstream ptp + host-local plugins, both driven
//     through libcni exactly as a container runtime drives them, in
//     alternating rounds; with CNIOptions.Policy also terrane-cni on a host
//     whose agent enforces NetworkPolicy from a real kube-apiserver, the
//     benchmark playing the kubelet (Pod objects before each ADD);
//   - RunThroughput: iperf3 TCP throughput pod→pod across hosts (routed by
//     Terrane), host→host over the same underlay, and across a VXLAN
//     overlay built on the same lab, in alternating rounds.
//
// Each run builds its own lab and removes it (lab.Down) whatever happens.
// It owns the bench lab and the pod and overlay namespaces it adds to it,
// all named by the lab's rules so `terrane lab down` removes them too.
package labbench
