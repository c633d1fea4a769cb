package cniplugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/fielderr"
)

// Defaults of the plugin's own configuration fields.
const (
	DefaultMTU     = 1500
	DefaultTimeout = 30 * time.Second
	// MinMTU and MaxMTU bound mtu: IPv4's minimum and a veth's maximum.
	MinMTU = 68
	MaxMTU = 65535
	// MaxTimeout bounds timeout: a runtime gives up on a plugin long before.
	MaxTimeout = 10 * time.Minute
)

// Config is one terrane-cni entry of a network configuration list, as the
// runtime hands it over on stdin.
type Config struct {
	// PluginConf holds the fields every plugin gets: cniVersion, name,
	// type, capabilities, prevResult, cni.dev/valid-attachments.
	types.PluginConf

	// AgentSocket is the agent's unix socket (agentSocket).
	AgentSocket string
	// QueueDir holds releases a DEL could not deliver (queueDir).
	QueueDir string
	// MTU of both ends of the veth pair (mtu).
	MTU int
	// Network is the network asked for when neither CNI_ARGS nor a pod
	// annotation names one (network); empty: the agent's default for the
	// pod's namespace.
	Network string
	// Timeout bounds each call to the agent (timeout, a Go duration).
	Timeout time.Duration
	// PodAnnotations come from runtimeConfig, filled by containerd and
	// CRI-O for plugins that declare the pod-annotations capability.
	PodAnnotations map[string]string
}

// rawConfig holds the plugin's own fields undecoded, so that each one's
// error can name it.
type rawConfig struct {
	AgentSocket   json.RawMessage `json:"agentSocket"`
	QueueDir      json.RawMessage `json:"queueDir"`
	MTU           json.RawMessage `json:"mtu"`
	Network       json.RawMessage `json:"network"`
	Timeout       json.RawMessage `json:"timeout"`
	RuntimeConfig json.RawMessage `json:"runtimeConfig"`
	// The name the spec used before 1.1.0 was final; libcni still sends it.
	LegacyAttachments json.RawMessage `json:"cni.dev/attachments"`
	ValidAttachments  json.RawMessage `json:"cni.dev/valid-attachments"` // decoded by PluginConf
}

// ParseConfig decodes and checks a plugin configuration. Unknown fields are
// allowed (CNI conventions); the known ones must have their types and
// ranges, and every problem is reported at once as a
// *fielderr.ValidationError.
func ParseConfig(data []byte) (*Config, error) {
	var conf Config
	if err := json.Unmarshal(data, &conf.PluginConf); err != nil {
		return nil, fmt.Errorf("decode terrane-cni configuration: %w", err)
	}
	var raw rawConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode terrane-cni configuration: %w", err)
	}
	var errs []fielderr.FieldError
	bad := func(path, format string, args ...any) {
		errs = append(errs, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}

	conf.AgentSocket = cniapi.DefaultSocket
	if s, ok := stringField(raw.AgentSocket, "agentSocket", bad); ok {
		if !filepath.IsAbs(s) {
			bad("agentSocket", "%q: want an absolute path", s)
		} else {
			conf.AgentSocket = s
		}
	}
	conf.QueueDir = cniapi.DefaultQueueDir
	if s, ok := stringField(raw.QueueDir, "queueDir", bad); ok {
		if !filepath.IsAbs(s) {
			bad("queueDir", "%q: want an absolute path", s)
		} else {
			conf.QueueDir = s
		}
	}
	if s, ok := stringField(raw.Network, "network", bad); ok {
		conf.Network = s
	}

	conf.MTU = DefaultMTU
	if present(raw.MTU) {
		if mtu, err := intField(raw.MTU); err != nil {
			bad("mtu", "%s: want an integer from %d to %d", raw.MTU, MinMTU, MaxMTU)
		} else if mtu < MinMTU || mtu > MaxMTU {
			bad("mtu", "%d: want %d to %d", mtu, MinMTU, MaxMTU)
		} else {
			conf.MTU = mtu
		}
	}

	conf.Timeout = DefaultTimeout
	if s, ok := stringField(raw.Timeout, "timeout", bad); ok {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			bad("timeout", "%q: want a duration such as \"30s\"", s)
		case d <= 0 || d > MaxTimeout:
			bad("timeout", "%s: want more than 0 and at most %s", d, MaxTimeout)
		default:
			conf.Timeout = d
		}
	}

	if present(raw.RuntimeConfig) {
		var rc map[string]json.RawMessage
		if err := json.Unmarshal(raw.RuntimeConfig, &rc); err != nil {
			bad("runtimeConfig", "want an object: %v", err)
		} else if a, ok := rc[cniapi.PodAnnotationsCapability]; ok && present(a) {
			if err := json.Unmarshal(a, &conf.PodAnnotations); err != nil {
				bad("runtimeConfig."+cniapi.PodAnnotationsCapability, "want an object of strings: %v", err)
			}
		}
	}

	// A GC configuration lists the valid attachments; libcni sends the
	// list under both names. No list: none is valid.
	if !present(raw.ValidAttachments) && present(raw.LegacyAttachments) {
		if err := json.Unmarshal(raw.LegacyAttachments, &conf.ValidAttachments); err != nil {
			bad("cni.dev/attachments", "want a list of attachments: %v", err)
		}
	}

	if len(errs) > 0 {
		return nil, &fielderr.ValidationError{Subject: "terrane-cni configuration", Errors: errs}
	}
	return &conf, nil
}

func present(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// stringField decodes an optional string field; absent, null and "" are
// not set.
func stringField(raw json.RawMessage, path string, bad func(string, string, ...any)) (string, bool) {
	if !present(raw) {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		bad(path, "%s: want a string", raw)
		return "", false
	}
	return s, s != ""
}

// intField decodes a JSON number that is an integer (not a string).
func intField(raw json.RawMessage) (int, error) {
	if raw[0] == '"' {
		return 0, fmt.Errorf("a string")
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, err
	}
	return strconv.Atoi(n.String())
}
