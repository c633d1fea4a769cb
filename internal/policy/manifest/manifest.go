// Package manifest reads NetworkPolicies and ClusterNetworkPolicies as
// people write them — YAML documents separated by ---, as for kubectl
// apply — and checks each as the API server would. The lab and terrane ctl
// policy read policy files through it.
package manifest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/policy"
)

// Object is one policy of a manifest: exactly one of NetworkPolicy and
// ClusterNetworkPolicy is set. Raw is its JSON, a NetworkPolicy's
// namespace defaulted to "default".
type Object struct {
	Raw                  json.RawMessage
	NetworkPolicy        *policy.NetworkPolicy
	ClusterNetworkPolicy *policy.ClusterNetworkPolicy
}

// String is "NetworkPolicy NAMESPACE/NAME" or "ClusterNetworkPolicy NAME".
func (o Object) String() string {
	if o.NetworkPolicy != nil {
		return "NetworkPolicy " + o.NetworkPolicy.Key()
	}
	return "ClusterNetworkPolicy " + o.ClusterNetworkPolicy.Metadata.Name
}

// Decode reads one object's JSON and checks it; a ValidationError's paths
// are the object's own ("spec.ingress[0]…", "kind").
func Decode(raw []byte) (Object, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(raw, &head)
	var o Object
	var err error
	switch head.Kind {
	case "NetworkPolicy":
		var np policy.NetworkPolicy
		if err = json.Unmarshal(raw, &np); err == nil {
			np.Metadata.Namespace = cmp.Or(np.Metadata.Namespace, "default")
			err = np.Validate()
			o.NetworkPolicy = &np
		}
	case "ClusterNetworkPolicy":
		var cnp policy.ClusterNetworkPolicy
		if err = json.Unmarshal(raw, &cnp); err == nil {
			err = cnp.Validate()
			o.ClusterNetworkPolicy = &cnp
		}
	default:
		return Object{}, &fielderr.ValidationError{Subject: "policy", Errors: []fielderr.FieldError{{Path: "kind",
			Msg: fmt.Sprintf("%q: give NetworkPolicy (networking.k8s.io/v1) or ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1)", head.Kind)}}}
	}
	if err != nil {
		return Object{}, err
	}
	o.Raw = raw
	if o.NetworkPolicy != nil {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			if md, ok := m["metadata"].(map[string]any); ok && md["namespace"] == nil {
				md["namespace"] = o.NetworkPolicy.Metadata.Namespace
				o.Raw, _ = json.Marshal(m)
			}
		}
	}
	return o, nil
}

// Parse reads every document of a YAML (or JSON) manifest. It fails, naming
// the document and the field, when one is invalid, and when there is none.
func Parse(data []byte) ([]Object, error) {
	var out []Object
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(bytes.TrimPrefix(doc, []byte("---")))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		o, err := Decode(js)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, errors.New("no policy in the manifest")
	}
	return out, nil
}

// Apply is objs as the server's POST /v1/policy takes them.
func Apply(objs []Object) api.PolicyApply {
	var req api.PolicyApply
	for _, o := range objs {
		if o.NetworkPolicy != nil {
			req.NetworkPolicies = append(req.NetworkPolicies, *o.NetworkPolicy)
		} else {
			req.ClusterNetworkPolicies = append(req.ClusterNetworkPolicies, *o.ClusterNetworkPolicy)
		}
	}
	return req
}
