package vpc

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/topology"
)

// Defaults and limits of the configuration.
const (
	DefaultBudget           = 50   // AWS's default routes per table
	MaxBudget               = 1000 // AWS's largest quota
	DefaultInstanceLabel    = "terrane.io/instance-id"
	DefaultInterval         = 15 * time.Second
	DefaultHeartbeatTimeout = 60 * time.Second
	maxConfigFile           = 1 << 20
)

// Config is the --vpc-config file.
type Config struct {
	// Provider is the cloud: aws.
	Provider string
	Region   string
	// Endpoint overrides the cloud API's URL (a VPC endpoint, or
	// internal/cloud/ec2fake in tests).
	Endpoint string
	// InstanceLabel is the host label holding the host's instance ID.
	InstanceLabel string
	Tables        []TableSpec
	// Interval is the longest time between passes; a state change starts
	// one sooner.
	Interval time.Duration
	// HeartbeatTimeout: a host whose agent has not checked in for this
	// long is unhealthy and no aggregate targets it.
	HeartbeatTimeout time.Duration
}

var (
	configFields = []string{"endpoint", "heartbeatTimeout", "instanceLabel", "interval", "provider", "region", "routeTables"}
	tableFields  = []string{"budget", "groups", "id", "ipv6Budget"}
	tableID      = regexp.MustCompile(`^rtb-[0-9a-zA-Z]+$`)
)

// ParseConfig reads a YAML or JSON VPC configuration. It reports every
// problem at once, each at the path of its field, and accepts nothing
// partially.
//
//	provider: aws
//	region: us-east-1
//	endpoint: http://127.0.0.1:4599   # optional
//	instanceLabel: terrane.io/instance-id
//	interval: 15s
//	heartbeatTimeout: 60s
//	routeTables:
//	  - id: rtb-0a1b2c
//	    groups: [us-east-1a, us-east-1b]
//	    budget: 50
//	    ipv6Budget: 50
func ParseConfig(data []byte) (*Config, error) {
	verr := &fielderr.ValidationError{Subject: "vpc config"}
	bad := func(path, format string, args ...any) {
		verr.Errors = append(verr.Errors, fielderr.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if len(data) > maxConfigFile {
		bad("", "the file is %d bytes, more than %d", len(data), maxConfigFile)
		return nil, verr
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		bad("", "not valid YAML or JSON: %v", err)
		return nil, verr
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil || doc == nil {
		bad("", "want an object with provider, region and routeTables")
		return nil, verr
	}
	unknown(doc, "", configFields, bad)
	c := &Config{InstanceLabel: DefaultInstanceLabel, Interval: DefaultInterval, HeartbeatTimeout: DefaultHeartbeatTimeout}
	c.Provider = str(doc, "", "provider", bad)
	switch {
	case c.Provider == "" && doc["provider"] == nil:
		bad("provider", "required; the one provider is aws")
	case c.Provider != "" && c.Provider != "aws":
		bad("provider", "%q is not a provider; use aws", c.Provider)
	}
	c.Region = str(doc, "", "region", bad)
	if c.Region == "" && doc["region"] == nil {
		bad("region", "required, e.g. us-east-1")
	}
	if c.Endpoint = str(doc, "", "endpoint", bad); c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("endpoint", "%q: want a URL such as https://ec2.us-east-1.amazonaws.com", c.Endpoint)
		}
	}
	if l := str(doc, "", "instanceLabel", bad); l != "" {
		c.InstanceLabel = l
		if !topology.ValidLabelKey(l) {
			bad("instanceLabel", "%q is not a valid label key", l)
		}
	}
	c.Interval = duration(doc, "interval", c.Interval, bad)
	c.HeartbeatTimeout = duration(doc, "heartbeatTimeout", c.HeartbeatTimeout, bad)
	switch tables := doc["routeTables"].(type) {
	case nil:
		bad("routeTables", "required: at least one {id, groups, budget}")
	case []any:
		if len(tables) == 0 {
			bad("routeTables", "at least one table is required")
		}
		seen := map[string]int{}
		for i, e := range tables {
			path := fmt.Sprintf("routeTables[%d]", i)
			m, ok := e.(map[string]any)
			if !ok {
				bad(path, "want an object {id, groups, budget}")
				continue
			}
			unknown(m, path+".", tableFields, bad)
			var t TableSpec
			t.ID = str(m, path+".", "id", bad)
			switch {
			case t.ID == "" && m["id"] == nil:
				bad(path+".id", "required: the route table's ID (rtb-…)")
			case t.ID != "" && !tableID.MatchString(t.ID):
				bad(path+".id", "%q is not a route table ID (rtb-…)", t.ID)
			case t.ID != "":
				if j, dup := seen[t.ID]; dup {
					bad(path+".id", "%s is already routeTables[%d]", t.ID, j)
				}
				seen[t.ID] = i
			}
			switch gs := m["groups"].(type) {
			case nil:
			case []any:
				for k, g := range gs {
					gp := fmt.Sprintf("%s.groups[%d]", path, k)
					s, ok := g.(string)
					switch {
					case !ok || s == "":
						bad(gp, "want a group path such as us-east-1a or zone-1/rack-2")
					case slices.Contains(t.Groups, s):
						bad(gp, "%q is listed twice", s)
					default:
						t.Groups = append(t.Groups, strings.Trim(s, "/"))
					}
				}
			default:
				bad(path+".groups", "want a list of group paths")
			}
			t.Budget4 = budget(m, path, "budget", DefaultBudget, bad)
			t.Budget6 = budget(m, path, "ipv6Budget", t.Budget4, bad)
			c.Tables = append(c.Tables, t)
		}
	default:
		bad("routeTables", "want a list of {id, groups, budget}")
	}
	if len(verr.Errors) > 0 {
		return nil, verr
	}
	return c, nil
}

func unknown(m map[string]any, prefix string, known []string, bad func(string, string, ...any)) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			bad(prefix+k, "unknown field; known fields: %s", strings.Join(known, ", "))
		}
	}
}

func str(m map[string]any, prefix, key string, bad func(string, string, ...any)) string {
	switch v := m[key].(type) {
	case nil:
		return ""
	case string:
		if v == "" {
			bad(prefix+key, "must not be empty")
		}
		return v
	default:
		bad(prefix+key, "want a string")
		return ""
	}
}

func duration(m map[string]any, key string, def time.Duration, bad func(string, string, ...any)) time.Duration {
	switch v := m[key].(type) {
	case nil:
		return def
	case string:
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 24*time.Hour {
			bad(key, "%q: want a duration from 1s to 24h, such as 15s", v)
			return def
		}
		return d
	default:
		bad(key, "want a duration such as 15s")
		return def
	}
}

func budget(m map[string]any, path, key string, def int, bad func(string, string, ...any)) int {
	switch v := m[key].(type) {
	case nil:
		return def
	case float64:
		if v != float64(int(v)) || v < 1 || v > MaxBudget {
			bad(path+"."+key, "%v: want a whole number of routes from 1 to %d", v, MaxBudget)
			return def
		}
		return int(v)
	default:
		bad(path+"."+key, "want a whole number of routes from 1 to %d", MaxBudget)
		return def
	}
}
