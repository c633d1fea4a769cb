package topology

// This file holds the file formats as written by people: strings everywhere,
// so that validation can name the field of every malformed value. Compile turns
// a Spec into the checked model in model.go.

// Spec is Terrane's native topology file (YAML or JSON).
type Spec struct {
	APIVersion   string        `json:"apiVersion,omitempty"`
	Kind         string        `json:"kind,omitempty"`
	Networks     []NetworkSpec `json:"networks"`
	Topologies   []TreeSpec    `json:"topologies"`
	Reservations []string      `json:"reservations,omitempty"`
	ServiceCIDRs []string      `json:"serviceCIDRs,omitempty"`

	// format records where the spec came from, so that errors name fields
	// the way the user wrote them.
	format Format
}

// NetworkSpec is one address pool.
type NetworkSpec struct {
	Name string `json:"name"`
	CIDR string `json:"cidr"`
	// BlockSize is the prefix length of the blocks hosts claim, e.g. 26.
	BlockSize int `json:"blockSize"`
	// Namespaces that may use the network; empty means every namespace.
	// Romana called these tenants.
	Namespaces []string `json:"namespaces,omitempty"`
	// Default marks the network used when a pod asks for none.
	Default bool `json:"default,omitempty"`
}

// TreeSpec applies one group tree to a set of networks.
type TreeSpec struct {
	Networks []string    `json:"networks"`
	Groups   []GroupSpec `json:"groups"`
}

// GroupSpec is one node of the group tree.
type GroupSpec struct {
	Name       string        `json:"name"`
	Assignment *SelectorSpec `json:"assignment,omitempty"`
	Groups     []GroupSpec   `json:"groups,omitempty"`
	Hosts      []HostSpec    `json:"hosts,omitempty"`
	// Routing is l2, bgp or vpc; empty inherits from the parent (top: l2).
	Routing string `json:"routing,omitempty"`
	// Advertise is blocks or group: what hosts of a bgp group announce.
	Advertise string `json:"advertise,omitempty"`
	// ExpectedHosts sizes the group's first prefix and weighs its home slot.
	ExpectedHosts int `json:"expectedHosts,omitempty"`
	// Weight weighs the group's home slot against its siblings (default 1).
	Weight int `json:"weight,omitempty"`
	// Prefix pins the group to a prefix of one of the tree's networks.
	Prefix string `json:"prefix,omitempty"`
	// BGP is how hosts of a bgp group speak to their ToR; descendants
	// inherit it unless they set their own.
	BGP *BGPSpec `json:"bgp,omitempty"`

	// path is where the group stands in the source file when that differs
	// from the native spelling (Romana's "map"); empty for native files.
	path string
}

// BGPSpec is a group's BGP settings as written.
type BGPSpec struct {
	// ASN is the hosts' own AS number (nil: 64512).
	ASN *int `json:"asn,omitempty"`
	// Peers are the ToR routers every host of the group connects to.
	Peers []BGPPeerSpec `json:"peers,omitempty"`
	// GracefulRestart is how long peers keep a restarting host's routes,
	// e.g. "120s" (empty: 120s; "0s" disables graceful restart).
	GracefulRestart string `json:"gracefulRestart,omitempty"`
}

// BGPPeerSpec is one ToR router.
type BGPPeerSpec struct {
	Address string `json:"address"`
	ASN     int    `json:"asn"`
	// Password turns on TCP MD5 signatures (RFC 2385) with this key.
	Password string `json:"password,omitempty"`
	// Port is the peer's BGP port (0: 179).
	Port int `json:"port,omitempty"`
}

// HostSpec is a host placed in a group by name rather than by labels.
type HostSpec struct {
	Name string `json:"name"`
	IP   string `json:"ip"`

	path string // as GroupSpec.path
}

// SelectorSpec is a Kubernetes-style label selector.
type SelectorSpec struct {
	MatchLabels      map[string]string `json:"matchLabels,omitempty"`
	MatchExpressions []RequirementSpec `json:"matchExpressions,omitempty"`
}

// RequirementSpec is one matchExpressions entry.
type RequirementSpec struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// Format names a topology file format.
type Format int

const (
	// Native is Terrane's own format.
	Native Format = iota
	// Romana is Romana v2.0's topology JSON.
	Romana
)

func (f Format) String() string {
	if f == Romana {
		return "romana"
	}
	return "native"
}

// Format reports which file format the spec was read from.
func (s *Spec) Format() Format { return s.format }
