package cniplugin

import (
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Args
	}{
		{"", Args{}},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u",
			Args{PodNamespace: "web", PodName: "front-0", PodUID: "u"}},
		{"TERRANE_NETWORK=blue", Args{Network: "blue"}},
		{"K8S_POD_NAME=a=b;TERRANE_NETWORK=", Args{PodName: "a=b"}}, // the first = splits
		{";;K8S_POD_NAMESPACE=x;", Args{PodNamespace: "x"}},
	} {
		got, err := ParseArgs(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseArgs(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"K8S_POD_NAME", "=x", "a=b;junk"} {
		if _, err := ParseArgs(bad); err == nil {
			t.Errorf("ParseArgs(%q) succeeded", bad)
		}
	}
}

func TestChooseNetwork(t *testing.T) {
	ann := func(v string) map[string]string { return map[string]string{"terrane.io/network": v, "other": "x"} }
	for _, tt := range []struct {
		name        string
		args        Args
		annotations map[string]string
		config      string
		want, from  string
	}{
		{"args beat everything", Args{Network: "a"}, ann("b"), "c", "a", FromArgs},
		{"annotation beats config", Args{}, ann("b"), "c", "b", FromAnnotation},
		{"config", Args{}, nil, "c", "c", FromConfig},
		{"empty annotation is no choice", Args{}, ann(""), "c", "c", FromConfig},
		{"other annotations only", Args{}, map[string]string{"x": "y"}, "", "", FromAgent},
		{"nothing: the agent picks", Args{PodNamespace: "ns"}, nil, "", "", FromAgent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, from := ChooseNetwork(tt.args, &Config{Network: tt.config, PodAnnotations: tt.annotations})
			if got != tt.want || from != tt.from {
				t.Errorf("ChooseNetwork = %q from %s, want %q from %s", got, from, tt.want, tt.from)
			}
		})
	}
}

// TestChooseNetworkFromConfigJSON: the annotation arrives the way a runtime
// puts it in runtimeConfig.
func TestChooseNetworkFromConfigJSON(t *testing.T) {
	conf, err := ParseConfig([]byte(`{"network":"c","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"b"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	args, err := ParseArgs("IgnoreUnknown=1;K8S_POD_NAME=p")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ChooseNetwork(args, conf); got != "b" {
		t.Errorf("network %q, want the annotation's b", got)
	}
}
