package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/store"
)

// endpoint is one pod attachment the agent has given an address: the
// node-local record, persisted before the plugin is answered, so a restart
// neither loses nor duplicates an allocation.
type endpoint struct {
	cniapi.Attachment
	Network      string       `json:"network"`
	Addr         netip.Addr   `json:"addr"`
	Block        netip.Prefix `json:"block"`
	Netns        string       `json:"netns"`
	HostVeth     string       `json:"hostVeth"`
	PodNamespace string       `json:"podNamespace,omitempty"`
	PodName      string       `json:"podName,omitempty"`
	PodUID       string       `json:"podUID,omitempty"`
	// Second is a dual-stack pod's address of the other family, in
	// another network: allocated, recorded, routed and released with the
	// first, in one record.
	Second *address `json:"second,omitempty"`
	// Since is when the endpoint was created: a release the plugin queued
	// before it is not for it.
	Since time.Time `json:"since"`

	rev int64 // store revision of the record
	// policyPending is set from a new pod's allocation until its ADD has
	// applied the rule set that holds it: no route to it before then, not
	// even one another ADD's sync would install.
	policyPending bool
}

// address is one address of an endpoint.
type address struct {
	Network string       `json:"network"`
	Addr    netip.Addr   `json:"addr"`
	Block   netip.Prefix `json:"block"`
}

// addresses are e's addresses, the first one first.
func (e *endpoint) addresses() []address {
	out := []address{{Network: e.Network, Addr: e.Addr, Block: e.Block}}
	if e.Second != nil {
		out = append(out, *e.Second)
	}
	return out
}

// holds reports whether e holds addr in network.
func (e *endpoint) holds(network string, addr netip.Addr) bool {
	for _, ad := range e.addresses() {
		if ad.Network == network && ad.Addr == addr {
			return true
		}
	}
	return false
}

const keyEndpoints = "v1/endpoints/"

func endpointKey(a cniapi.Attachment) string {
	return keyEndpoints + url.PathEscape(a.ContainerID) + "/" + url.PathEscape(a.IfName)
}

// localState is the agent's node-local store of endpoints.
type localState struct {
	st store.Store
}

// load reads every endpoint record. A record that does not decode is
// reported, not skipped: it would be an allocation the agent forgets.
func (l *localState) load(ctx context.Context) ([]*endpoint, error) {
	kvs, _, err := l.st.List(ctx, keyEndpoints)
	if err != nil {
		return nil, fmt.Errorf("read the agent's state: %w", err)
	}
	out := make([]*endpoint, 0, len(kvs))
	for _, kv := range kvs {
		e := &endpoint{}
		if err := json.Unmarshal(kv.Value, e); err != nil || !e.Addr.IsValid() || !e.Block.IsValid() || e.ContainerID == "" ||
			e.Second != nil && (!e.Second.Addr.IsValid() || !e.Second.Block.IsValid() || e.Second.Network == "") {
			return nil, fmt.Errorf("the agent's state holds a broken record %s (%q); remove the state file to start afresh (pods then need re-creating)", kv.Key, strings.TrimSpace(string(kv.Value)))
		}
		if endpointKey(e.Attachment) != kv.Key {
			return nil, fmt.Errorf("the agent's state record %s names attachment %s", kv.Key, e.ID())
		}
		e.rev = kv.Revision
		out = append(out, e)
	}
	return out, nil
}

// put writes e (created or replaced) and records its new revision.
func (l *localState) put(ctx context.Context, e *endpoint) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	op := store.Create(endpointKey(e.Attachment), v)
	if e.rev != 0 {
		op = store.Update(endpointKey(e.Attachment), v, e.rev)
	}
	rev, err := l.st.Txn(ctx, op)
	if err != nil {
		return fmt.Errorf("record %s: %w", e.ID(), err)
	}
	e.rev = rev
	return nil
}

// remove deletes e's record.
func (l *localState) remove(ctx context.Context, e *endpoint) error {
	if _, err := l.st.Txn(ctx, store.Delete(endpointKey(e.Attachment), e.rev)); err != nil {
		return fmt.Errorf("forget %s: %w", e.ID(), err)
	}
	return nil
}
