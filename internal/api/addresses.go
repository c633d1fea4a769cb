package api

import "github.com/terrane-net/terrane/internal/ipam"

// AddressReport is a host's agent telling the server which addresses it has
// handed out (PUT /v1/hosts/{host}/addresses). It is a delta on the
// generation the agent last had accepted (Base), or the whole set (Full),
// always with the agent's pool blocks and the host's VM ports, which are
// few. The agent sends one at most every few seconds, and only when
// something changed: the server sees every address in use without a store
// write per pod.
type AddressReport struct {
	// Full replaces everything the server holds for the host; otherwise
	// Added and Removed apply to generation Base.
	Full    bool                   `json:"full"`
	Base    uint64                 `json:"base"`
	Added   []ipam.ReportedAddress `json:"added"`
	Removed []ipam.AddressKey      `json:"removed"`
	// Blocks are the agent's pool blocks with their counts in use.
	Blocks []ipam.ReportedBlock `json:"blocks"`
	// Ports are the host's VM ports as the agent found them.
	Ports []ipam.ReportedPort `json:"ports"`
}

// AddressReportResult answers a report: the generation the server now
// holds, the agent's Base for its next delta.
type AddressReportResult struct {
	Generation uint64 `json:"generation"`
	Addresses  int    `json:"addresses"`
}

// RepairRequest asks the server to release what Check proves leaked
// (POST /v1/check/repair); DryRun (the default in `terrane ctl`) only
// lists it.
type RepairRequest struct {
	DryRun bool `json:"dry_run"`
}

// RepairResult lists the VM ports released (or, in a dry run, that would
// be) and the findings left that no repair may touch.
type RepairResult struct {
	DryRun   bool           `json:"dry_run"`
	Released []string       `json:"released"`
	Left     []ipam.Finding `json:"left"`
}

// Explanation answers GET /v1/addresses/{addr}: who holds the address and
// why.
type Explanation = ipam.Explanation
