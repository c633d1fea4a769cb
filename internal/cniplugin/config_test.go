package cniplugin

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/fielderr"
)

func TestParseConfigDefaults(t *testing.T) {
	conf, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"terrane","type":"terrane-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.AgentSocket != cniapi.DefaultSocket || conf.QueueDir != cniapi.DefaultQueueDir ||
		conf.MTU != 1500 || conf.Network != "" || conf.Timeout != 30*time.Second || conf.PodAnnotations != nil {
		t.Errorf("defaults: %+v", conf)
	}
	if conf.CNIVersion != "1.1.0" || conf.Name != "terrane" || conf.Type != "terrane-cni" {
		t.Errorf("standard fields: %+v", conf.PluginConf)
	}
}

func TestParseConfigFields(t *testing.T) {
	conf, err := ParseConfig([]byte(`{
		"cniVersion": "1.1.0", "name": "terrane", "type": "terrane-cni",
		"agentSocket": "/run/x/agent.sock", "queueDir": "/var/lib/x/q",
		"mtu": 9000, "network": "blue", "timeout": "2.5s",
		"capabilities": {"io.kubernetes.cri.pod-annotations": true},
		"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"terrane.io/network": "red", "other": "x"}, "portMappings": []},
		"someOtherPluginField": {"nested": [1, 2]},
		"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.AgentSocket != "/run/x/agent.sock" || conf.QueueDir != "/var/lib/x/q" || conf.MTU != 9000 ||
		conf.Network != "blue" || conf.Timeout != 2500*time.Millisecond {
		t.Errorf("fields: %+v", conf)
	}
	if conf.PodAnnotations["terrane.io/network"] != "red" || !conf.Capabilities[cniapi.PodAnnotationsCapability] {
		t.Errorf("annotations %v, capabilities %v", conf.PodAnnotations, conf.Capabilities)
	}
	if len(conf.ValidAttachments) != 1 || conf.ValidAttachments[0].ContainerID != "c1" || conf.ValidAttachments[0].IfName != "eth0" {
		t.Errorf("valid attachments %+v", conf.ValidAttachments)
	}
}

func TestParseConfigLegacyAttachments(t *testing.T) {
	conf, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","cni.dev/attachments":[{"containerID":"c2","ifname":"net1"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(conf.ValidAttachments) != 1 || conf.ValidAttachments[0].ContainerID != "c2" {
		t.Errorf("legacy attachments: %+v", conf.ValidAttachments)
	}
	_, err = ParseConfig([]byte(`{"cniVersion":"1.1.0","cni.dev/attachments":"x"}`))
	if err == nil || !strings.Contains(err.Error(), "cni.dev/attachments: want a list") {
		t.Errorf("bad legacy list: %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name, json string
		want       []string // each must appear; the count of problems is len(want)
	}{
		{"mtu too large", `{"mtu":70000}`, []string{"mtu: 70000: want 68 to 65535"}},
		{"mtu too small", `{"mtu":67}`, []string{"mtu: 67: want 68 to 65535"}},
		{"mtu not integer", `{"mtu":1500.5}`, []string{"mtu: 1500.5: want an integer"}},
		{"mtu string", `{"mtu":"1500"}`, []string{`mtu: "1500": want an integer`}},
		{"mtu bool", `{"mtu":true}`, []string{"mtu: true: want an integer"}},
		{"timeout not a duration", `{"timeout":"soon"}`, []string{`timeout: "soon": want a duration`}},
		{"timeout a number", `{"timeout":30}`, []string{"timeout: 30: want a string"}},
		{"timeout negative", `{"timeout":"-1s"}`, []string{"timeout: -1s: want more than 0"}},
		{"timeout too long", `{"timeout":"1h"}`, []string{"timeout: 1h0m0s: want more than 0 and at most 10m0s"}},
		{"socket relative", `{"agentSocket":"agent.sock"}`, []string{`agentSocket: "agent.sock": want an absolute path`}},
		{"socket number", `{"agentSocket":1}`, []string{"agentSocket: 1: want a string"}},
		{"queue relative", `{"queueDir":"q"}`, []string{`queueDir: "q": want an absolute path`}},
		{"network not string", `{"network":["a"]}`, []string{`network: ["a"]: want a string`}},
		{"runtimeConfig not object", `{"runtimeConfig":"x"}`, []string{"runtimeConfig: want an object"}},
		{"annotations not strings", `{"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}}`,
			[]string{"runtimeConfig.io.kubernetes.cri.pod-annotations: want an object of strings"}},
		{"all at once", `{"mtu":0,"timeout":"x","agentSocket":"rel","queueDir":"rel"}`,
			[]string{"agentSocket", "queueDir", "mtu: 0", "timeout"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.json))
			var ve *fielderr.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("ParseConfig(%s) = %v, want a validation error", tt.json, err)
			}
			if len(ve.Errors) != len(tt.want) {
				t.Errorf("%d problems, want %d: %v", len(ve.Errors), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	for _, bad := range []string{`not json`, `[]`, `{"cniVersion":1}`, `{"capabilities":"x"}`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) succeeded", bad)
		}
	}
}

// FuzzParseConfig: the parser never panics, and what it accepts is in range
// and survives a round trip through its own fields.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"cniVersion":"1.1.0","name":"terrane","type":"terrane-cni","mtu":9000,"timeout":"1s","network":"blue"}`,
		`{"agentSocket":"/a","queueDir":"/q","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"x"}}}`,
		`{"mtu":70000}`, `{"mtu":1e3}`, `{"timeout":"-5m"}`, `{"mtu":null,"network":null}`,
		`{"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]}`, `{"cni.dev/attachments":[]}`,
		`{"runtimeConfig":{"io.kubernetes.cri.pod-annotations":null}}`, `null`, `{"MTU":100}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		conf, err := ParseConfig(data)
		if err != nil {
			if conf != nil {
				t.Fatalf("error %v with a configuration", err)
			}
			return
		}
		if conf.MTU < MinMTU || conf.MTU > MaxMTU {
			t.Fatalf("accepted mtu %d", conf.MTU)
		}
		if conf.Timeout <= 0 || conf.Timeout > MaxTimeout {
			t.Fatalf("accepted timeout %s", conf.Timeout)
		}
		if !filepath.IsAbs(conf.AgentSocket) || !filepath.IsAbs(conf.QueueDir) {
			t.Fatalf("accepted relative paths %q, %q", conf.AgentSocket, conf.QueueDir)
		}
		again, err := json.Marshal(map[string]any{
			"agentSocket": conf.AgentSocket, "queueDir": conf.QueueDir, "mtu": conf.MTU,
			"network": conf.Network, "timeout": conf.Timeout.String(),
			"runtimeConfig": map[string]any{cniapi.PodAnnotationsCapability: conf.PodAnnotations},
		})
		if err != nil {
			t.Fatal(err)
		}
		conf2, err := ParseConfig(again)
		if err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		if conf2.AgentSocket != conf.AgentSocket || conf2.QueueDir != conf.QueueDir || conf2.MTU != conf.MTU ||
			conf2.Network != conf.Network || conf2.Timeout != conf.Timeout || len(conf2.PodAnnotations) != len(conf.PodAnnotations) {
			t.Fatalf("round trip changed %+v into %+v", conf, conf2)
		}
		for k, v := range conf.PodAnnotations {
			if conf2.PodAnnotations[k] != v {
				t.Fatalf("annotation %q: %q became %q", k, v, conf2.PodAnnotations[k])
			}
		}
	})
}
