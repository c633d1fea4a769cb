package metrics

// The server's metrics. The first group existed before the rest and keeps
// its names (dashboards, tests and docs use them).
var (
	StoreCommits = Def{Name: "terrane_store_commits_total", Type: Counter, Where: "server",
		Help: "Transactions committed to the store."}
	StoreWrites = Def{Name: "terrane_store_writes_total", Type: Counter, Where: "server",
		Help: "Records written to the store."}
	StoreRetries = Def{Name: "terrane_store_conflict_retries_total", Type: Counter, Where: "server",
		Help: "Operations retried after a revision conflict."}
	StoreOtherWrites = Def{Name: "terrane_store_other_writes_total", Type: Counter, Where: "server",
		Help: "Records written outside the allocation state: heartbeats, address reports, leases."}
	StateReloads = Def{Name: "terrane_state_reloads_total", Type: Counter, Where: "server",
		Help: "Full reloads of the state from a store listing (another server wrote, or a conflict)."}
	PodOrphansReleased = Def{Name: "terrane_pod_orphans_released_total", Type: Counter, Where: "server",
		Help: "Addresses of pods that no longer exist this server asked their agents to release (Kubernetes Pod controller)."}
	StoreRevision = Def{Name: "terrane_store_revision", Type: Gauge, Where: "server",
		Help: "Store revision the state is consistent at."}
	StateLoadError = Def{Name: "terrane_state_load_error", Type: Gauge, Where: "server",
		Help: "1 while the store holds records this server cannot load (it serves no allocations; /readyz fails)."}

	AddressesAllocated = Def{Name: "terrane_addresses_allocated", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "Addresses in use per network: the server's endpoints and what the agents report."}
	AddressesCapacity = Def{Name: "terrane_addresses_capacity", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "Addresses of the network outside its reservations."}
	AddressesFree = Def{Name: "terrane_addresses_free", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "Addresses of the network neither allocated nor reserved (capacity − allocated)."}
	AddressesInBlocks = Def{Name: "terrane_addresses_in_blocks", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "Addresses inside claimed blocks, used or not."}
	Blocks = Def{Name: "terrane_blocks", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "Blocks claimed, per network."}
	Hosts = Def{Name: "terrane_hosts", Type: Gauge, Where: "server",
		Help: "Registered hosts."}

	GroupCapacity = Def{Name: "terrane_group_addresses_capacity", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "Addresses in the group's prefixes (what terrane plan calls assignable)."}
	GroupAllocated = Def{Name: "terrane_group_addresses_allocated", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "Addresses in use in the group and the groups below it."}
	GroupFree = Def{Name: "terrane_group_addresses_free", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "Addresses of the group's prefixes not in use (capacity − allocated)."}
	GroupBlocks = Def{Name: "terrane_group_blocks", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "Blocks claimed in the group and the groups below it."}
	GroupHosts = Def{Name: "terrane_group_hosts", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "Hosts whose leaf group is the group or one below it."}

	BlockClaims = Def{Name: "terrane_block_claims_total", Type: Counter, Labels: []string{"network", "result"}, Where: "server",
		Help: "Block claims the server answered, by result: ok, exhausted (no room), route_budget (a budget would be exceeded), error."}
	BlockClaimSeconds = Def{Name: "terrane_block_claim_duration_seconds", Type: Histogram, Labels: []string{"network"}, Where: "server",
		Help: "Time the server takes to answer a block claim (the store transaction included)."}

	ToRRoutes = Def{Name: "terrane_tor_routes", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "Routes the ToR of a bgp leaf group learns from the group's hosts (as terrane plan counts them)."}
	ToRRouteBudget = Def{Name: "terrane_tor_route_budget", Type: Gauge, Labels: []string{"network", "group"}, Where: "server",
		Help: "The most routes a ToR may receive (the topology's BGP budget); absent when unbounded."}
	VPCTableRoutes = Def{Name: "terrane_vpc_table_routes", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "Routes the network's VPC route table needs, computed from the state (as terrane plan counts them)."}
	VPCTableRouteBudget = Def{Name: "terrane_vpc_table_route_budget", Type: Gauge, Labels: []string{"network"}, Where: "server",
		Help: "The VPC route table's budget the allocator keeps the network within; absent when unbounded."}

	CheckFindings = Def{Name: "terrane_check_findings", Type: Gauge, Labels: []string{"kind"}, Where: "server",
		Help: "Findings of the address audit (terrane ctl check), by kind: leak, address-twice, address-outside-blocks, orphan-pod, block-of-gone-host, …"}

	BGPSessionUp = Def{Name: "terrane_bgp_session_up", Type: Gauge, Labels: []string{"host", "peer"}, Where: "server",
		Help: "1 when the host's session with the peer is established, as the host's agent last reported (terrane ctl bgp); 0 once the host has been silent (no heartbeat or report) for 40 s, as the topology page marks it."}
	BGPReportAge = Def{Name: "terrane_bgp_report_age_seconds", Type: Gauge, Labels: []string{"host"}, Where: "server",
		Help: "Seconds since the host's agent last reported its BGP status."}

	VPCActive = Def{Name: "terrane_vpc_active", Type: Gauge, Where: "server",
		Help: "1 on the server that holds the VPC reconciler lease."}
	VPCPasses = Def{Name: "terrane_vpc_passes_total", Type: Counter, Where: "server",
		Help: "VPC reconcile passes."}
	VPCPassErrors = Def{Name: "terrane_vpc_pass_errors_total", Type: Counter, Where: "server",
		Help: "VPC reconcile passes that ended with an error."}
	VPCPassSeconds = Def{Name: "terrane_vpc_pass_seconds", Type: Gauge, Where: "server",
		Help: "Duration of the last VPC reconcile pass."}
	VPCAPICalls = Def{Name: "terrane_vpc_api_calls_total", Type: Counter, Labels: []string{"action"}, Where: "server",
		Help: "Cloud API calls, by action."}
	VPCThrottled = Def{Name: "terrane_vpc_throttled_total", Type: Counter, Where: "server",
		Help: "Cloud API calls refused for the rate limit."}
	VPCRouteLimitExceeded = Def{Name: "terrane_vpc_route_limit_exceeded_total", Type: Counter, Labels: []string{"table"}, Where: "server",
		Help: "Routes the cloud refused for the table's route limit."}
	VPCRoutes = Def{Name: "terrane_vpc_routes", Type: Gauge, Labels: []string{"table", "family"}, Where: "server",
		Help: "Terrane's routes in the cloud route table, as the reconciler last wrote it."}
	VPCRouteBudget = Def{Name: "terrane_vpc_route_budget", Type: Gauge, Labels: []string{"table", "family"}, Where: "server",
		Help: "The cloud route table's route budget."}
	VPCOverBudget = Def{Name: "terrane_vpc_over_budget", Type: Gauge, Labels: []string{"table", "family"}, Where: "server",
		Help: "1 when the routes needed exceed the budget even at the most aggregation."}
	VPCDirectShare = Def{Name: "terrane_vpc_direct_share", Type: Gauge, Labels: []string{"table", "family"}, Where: "server",
		Help: "Share of allocated addresses routed straight to their owner host."}
)

// The agent's metrics.
var (
	AgentReady = Def{Name: "terrane_agent_ready", Type: Gauge, Where: "agent",
		Help: "1 when the agent serves CNI ADDs (registered, state applied)."}
	AgentCNISeconds = Def{Name: "terrane_agent_cni_duration_seconds", Type: Histogram, Labels: []string{"op", "result"}, Where: "agent",
		Help: "Time the agent takes to answer the CNI plugin, by operation (add, del, check) and result (ok, error)."}
	AgentBlocks = Def{Name: "terrane_agent_blocks", Type: Gauge, Labels: []string{"network"}, Where: "agent",
		Help: "Blocks the host holds."}
	AgentAddressesAllocated = Def{Name: "terrane_agent_addresses_allocated", Type: Gauge, Labels: []string{"network"}, Where: "agent",
		Help: "Addresses of the host's blocks handed out (pods, VM ports)."}
	AgentAddressesFree = Def{Name: "terrane_agent_addresses_free", Type: Gauge, Labels: []string{"network"}, Where: "agent",
		Help: "Addresses of the host's blocks free to hand out without a claim."}
	AgentBlockClaims = Def{Name: "terrane_agent_block_claims_total", Type: Counter, Labels: []string{"network", "result"}, Where: "agent",
		Help: "Block claims the agent sent, by result: ok, refused (the server said no: the network is full, a route budget, the host is unknown), error (no answer)."}
	AgentBlockClaimSeconds = Def{Name: "terrane_agent_block_claim_duration_seconds", Type: Histogram, Labels: []string{"network"}, Where: "agent",
		Help: "Time from the agent's block claim to the server's answer."}
	AgentReportLag = Def{Name: "terrane_agent_address_report_lag_seconds", Type: Histogram, Where: "agent",
		Help: "Time from a change of the host's addresses (a CNI ADD or DEL, a VM port, a block) to the server acknowledging the report that carries it."}
	AgentReportPending = Def{Name: "terrane_agent_address_report_pending_seconds", Type: Gauge, Where: "agent",
		Help: "Age of the oldest change of the host's addresses the server has not acknowledged (0: none)."}
	AgentServerUnreachable = Def{Name: "terrane_agent_server_unreachable_seconds", Type: Gauge, Where: "agent",
		Help: "How long no server has answered the agent (0: the last call was answered); meanwhile ADDs are served from the host's blocks and nothing is claimed."}
	AgentReports = Def{Name: "terrane_agent_address_reports_total", Type: Counter, Labels: []string{"result"}, Where: "agent",
		Help: "Address reports sent to the server, by result (ok, error)."}
	AgentBGPSessionUp = Def{Name: "terrane_agent_bgp_session_up", Type: Gauge, Labels: []string{"peer"}, Where: "agent",
		Help: "1 when the speaker's session with the peer is established."}
	AgentBGPSessionState = Def{Name: "terrane_agent_bgp_session_state", Type: Gauge, Labels: []string{"peer", "state"}, Where: "agent",
		Help: "1 for the session's current state (idle, connect, active, opensent, openconfirm, established), 0 for the others."}
	AgentBGPAnnounced = Def{Name: "terrane_agent_bgp_announced_prefixes", Type: Gauge, Where: "agent",
		Help: "Prefixes the host's speaker announces."}
)

// All is every metric, server's first.
var All = []Def{
	StoreCommits, StoreWrites, StoreRetries, StoreOtherWrites, StateReloads, PodOrphansReleased, StoreRevision, StateLoadError,
	AddressesAllocated, AddressesCapacity, AddressesFree, AddressesInBlocks, Blocks, Hosts,
	GroupCapacity, GroupAllocated, GroupFree, GroupBlocks, GroupHosts,
	BlockClaims, BlockClaimSeconds,
	ToRRoutes, ToRRouteBudget, VPCTableRoutes, VPCTableRouteBudget,
	CheckFindings, BGPSessionUp, BGPReportAge,
	VPCActive, VPCPasses, VPCPassErrors, VPCPassSeconds, VPCAPICalls, VPCThrottled, VPCRouteLimitExceeded,
	VPCRoutes, VPCRouteBudget, VPCOverBudget, VPCDirectShare,

	AgentReady, AgentCNISeconds, AgentBlocks, AgentAddressesAllocated, AgentAddressesFree,
	AgentBlockClaims, AgentBlockClaimSeconds, AgentReportLag, AgentReportPending, AgentServerUnreachable, AgentReports,
	AgentBGPSessionUp, AgentBGPSessionState, AgentBGPAnnounced,
}

// BGPStates are the session states of terrane_agent_bgp_session_state.
var BGPStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}
