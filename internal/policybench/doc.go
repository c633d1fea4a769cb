// Package policybench measures what enforcing NetworkPolicy costs, in one
// run on one machine, against the way iptables-based providers enforce it:
//
//   - RunPair: TCP throughput (iperf3) and TCP connection rate pod→pod
//     through a node namespace with no policy, with Terrane's nftables
//     table (internal/dataplane/nft) for a low and a high number of rules
//     selecting the pair, and with the same policies rendered as linear
//     iptables chains (LinearRules), the configurations taking turns round
//     by round so machine noise falls on all of them alike;
//   - the full sync of one node of policygen.BigCluster (compile and apply
//     into a fresh nftables table) and an incremental change (one pod's
//     label: compile and apply of the difference).
//
// It owns the namespaces it makes (NetnsPrefix) and deletes them whatever
// happens, also when its context is cancelled.
package policybench
