package server

import (
	"context"
	"net/http"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
)

// A namespace's own default network (Kubernetes: its annotation
// terrane.io/network) is allocation state like the rest: one record per
// namespace, v1/namespaces/<ns>, written by compare-and-swap through
// State.Do, so agents see it in their snapshot.

func (a *API) listNamespaces(w http.ResponseWriter, r *http.Request, _ Identity) error {
	return a.state.View(r.Context(), func(al *ipam.Allocator, _ *topologyRecord) error {
		out := api.NamespaceList{Namespaces: map[string]string{}}
		if al != nil {
			out.Namespaces = al.NamespaceNetworks()
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func (a *API) setNamespace(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ns := r.PathValue("ns")
	if err := api.ValidateName("namespace", ns); err != nil {
		return &apiError{http.StatusBadRequest, "namespace", err.Error()}
	}
	var b api.NamespaceRequest
	if err := decode(r, maxBody, &b); err != nil {
		return err
	}
	if b.Network == "" {
		return &apiError{http.StatusBadRequest, "network", "network is required (DELETE /v1/namespaces/" + ns + " clears the default)"}
	}
	return a.namespaceChange(w, r, ns, b.Network)
}

func (a *API) clearNamespace(w http.ResponseWriter, r *http.Request, _ Identity) error {
	return a.namespaceChange(w, r, r.PathValue("ns"), "")
}

func (a *API) namespaceChange(w http.ResponseWriter, r *http.Request, ns, network string) error {
	changes, err := a.state.SetNamespaceNetwork(r.Context(), ns, network)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Changes{Changes: changes})
	return nil
}

// NamespaceNetworks maps each namespace with its own default network to it.
func (s *State) NamespaceNetworks(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := s.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al != nil {
			out = al.NamespaceNetworks()
		}
		return nil
	})
	return out, err
}

// SetNamespaceNetwork makes network namespace's default ("" clears it),
// the operation PUT and DELETE /v1/namespaces/{ns} run.
func (s *State) SetNamespaceNetwork(ctx context.Context, namespace, network string) ([]ipam.Change, error) {
	return s.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) { return al.SetNamespaceNetwork(namespace, network) })
}
