package cniplugin

import (
	"fmt"
	"strings"

	"github.com/terrane-net/terrane/internal/cniapi"
)

// Args are the CNI_ARGS keys the plugin reads; every other key is ignored
// (kubelet and runtimes add their own, with IgnoreUnknown=1 or not).
type Args struct {
	PodNamespace string // K8S_POD_NAMESPACE
	PodName      string // K8S_POD_NAME
	PodUID       string // K8S_POD_UID
	Network      string // TERRANE_NETWORK
}

// ParseArgs reads CNI_ARGS: "KEY=VALUE" pairs separated by ";".
func ParseArgs(s string) (Args, error) {
	var a Args
	if s == "" {
		return a, nil
	}
	for pair := range strings.SplitSeq(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return Args{}, fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", pair)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		case "K8S_POD_NAME":
			a.PodName = v
		case "K8S_POD_UID":
			a.PodUID = v
		case cniapi.NetworkArg:
			a.Network = v
		}
	}
	return a, nil
}

// Where the network of an ADD came from, highest precedence first.
const (
	FromArgs       = "CNI_ARGS " + cniapi.NetworkArg
	FromAnnotation = "pod annotation " + cniapi.NetworkAnnotation
	FromConfig     = "configuration field network"
	FromAgent      = "the agent's default for the pod's namespace"
)

// ChooseNetwork picks the network to ask the agent for: CNI_ARGS
// TERRANE_NETWORK, then the pod annotation terrane.io/network (from
// runtimeConfig), then the configuration's network, then "" (the agent picks
// the namespace's default). It also says where the choice came from.
func ChooseNetwork(args Args, conf *Config) (network, from string) {
	switch {
	case args.Network != "":
		return args.Network, FromArgs
	case conf.PodAnnotations[cniapi.NetworkAnnotation] != "":
		return conf.PodAnnotations[cniapi.NetworkAnnotation], FromAnnotation
	case conf.Network != "":
		return conf.Network, FromConfig
	}
	return "", FromAgent
}
