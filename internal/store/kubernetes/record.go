package kubernetes

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/terrane-net/terrane/internal/store"
)

// The custom resource every record (and the head) is stored as.
const (
	group      = "terrane.io"
	version    = "v1alpha1"
	kind       = "StoreRecord"
	resource   = "storerecords"
	apiVersion = group + "/" + version
	// CRDName is the name of the CustomResourceDefinition.
	CRDName = resource + "." + group
	// headName is the serialization point's object name; record names
	// start with "k-" or "h-", so no key maps to it.
	headName = "head"
	// maxNameLen is the longest object name Kubernetes accepts (a DNS
	// subdomain).
	maxNameLen = 253
	// objectLabel names each object by a label too ("head", or a hash of
	// the record's key): one list with the selector "objectLabel in (head,
	// h1, h2)" reads the head and some records in one consistent read.
	objectLabel = "terrane.io/object"
)

var recordsGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: resource}

// object is a StoreRecord as this package reads and writes it.
type object struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       spec       `json:"spec"`
}

type objectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

type spec struct {
	Key    string `json:"key,omitempty"`
	RawKey []byte `json:"rawKey,omitempty"`
	Value  []byte `json:"value,omitempty"`
	// Revision is the store revision of the last write (on the head: of
	// the last commit).
	Revision int64 `json:"revision"`
	// Deleted marks a tombstone: the key was deleted at Revision.
	Deleted bool      `json:"deleted,omitempty"`
	Head    *headSpec `json:"head,omitempty"`
}

type headSpec struct {
	Compacted int64       `json:"compacted,omitempty"`
	Pending   *pendingTxn `json:"pending,omitempty"`
	Commits   []commit    `json:"commits,omitempty"`
}

// pendingTxn is a committed transaction: its ops are the truth for their keys
// until every one is applied to its record and the head is cleared.
type pendingTxn struct {
	Revision int64       `json:"revision"`
	Ops      []pendingOp `json:"ops,omitempty"`
}

type pendingOp struct {
	Key    string `json:"key,omitempty"`
	RawKey []byte `json:"rawKey,omitempty"`
	Value  []byte `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
	// ObjectVersion is the resourceVersion of the record object when the
	// transaction committed, "" when there was none: the fence that lets
	// the op be applied exactly once, whoever applies it.
	ObjectVersion string `json:"objectVersion,omitempty"`
}

// commit maps a store revision to the resourceVersion of the head write that
// committed it: every record write of that revision and later ones comes
// after that resourceVersion.
type commit struct {
	Revision        int64  `json:"revision"`
	ResourceVersion string `json:"resourceVersion"`
}

func (o *object) key() string {
	if o.Spec.RawKey != nil {
		return string(o.Spec.RawKey)
	}
	return o.Spec.Key
}

func (op *pendingOp) key() string {
	if op.RawKey != nil {
		return string(op.RawKey)
	}
	return op.Key
}

// keyFields splits a key into the display field (valid UTF-8) or the raw one.
func keyFields(key string) (string, []byte) {
	if utf8.ValidString(key) {
		return key, nil
	}
	return "", []byte(key)
}

var nameEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// objectName maps a store key to its object's name: "k-" and the key in
// lower-case base32 (reversible, readable enough in kubectl), or for keys
// too long for a name "h-" and the key's SHA-256. Either way the object
// also holds the key itself, which readers check.
func objectName(key string) string {
	n := "k-" + strings.ToLower(nameEncoding.EncodeToString([]byte(key)))
	if len(n) <= maxNameLen {
		return n
	}
	sum := sha256.Sum256([]byte(key))
	return "h-" + hex.EncodeToString(sum[:])
}

// labelFor is the objectLabel value of key's record: 40 hex digits of its
// SHA-256 (a label value has at most 63 characters). A collision would be
// caught by the key check on read.
func labelFor(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:20])
}

func (o *object) kv() store.KV {
	return store.KV{Key: o.key(), Value: o.Spec.Value, Revision: o.Spec.Revision}
}

// recordFor is the object an op of a pending transaction leaves behind.
func recordFor(ns string, op pendingOp, rev int64) *object {
	o := &object{
		APIVersion: apiVersion,
		Kind:       kind,
		Metadata: objectMeta{Name: objectName(op.key()), Namespace: ns, ResourceVersion: op.ObjectVersion,
			Labels: map[string]string{objectLabel: labelFor(op.key())}},
		Spec: spec{Key: op.Key, RawKey: op.RawKey, Revision: rev, Deleted: op.Delete},
	}
	if !op.Delete {
		o.Spec.Value = op.Value
		if o.Spec.Value == nil {
			o.Spec.Value = []byte{}
		}
	}
	return o
}

func fromUnstructured(u *unstructured.Unstructured) (*object, error) {
	data, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var o object
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", kind, u.GetName(), err)
	}
	return &o, nil
}
