// Package lab builds a whole Terrane cluster on one machine out of network
// namespaces: hosts on L2 segments (a bridge per segment), racks behind
// router namespaces joined by a spine bridge, the control plane and one agent
// per host, and pods created through libcni exactly as a container runtime
// creates them. It owns everything named terrane-lab-<name>-* and the lab
// directory, and nothing else: `Down` removes all of it, even after a crash.
//
// The pure parts — the scenario format (ParseScenario) and the routes the
// fabric's routers carry (RouterRoutes) — take values in and return values
// out; the rest drives the kernel through the ip command and the netlink
// dataplane adapter.
package lab
