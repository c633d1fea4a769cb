// Package cnihttp serves the node agent's side of the CNI socket API
// (internal/cniapi) over net/http. It is a package of its own so that the
// plugin, which imports cniapi for the contract and the Client, does not
// link net/http.
package cnihttp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/terrane-net/terrane/internal/cniapi"
)

// Handler serves ag on the socket API. Errors that are *cniapi.Error keep their
// code; any other error is CodeInternal.
func Handler(ag cniapi.Agent) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cniapi.PathAdd, func(w http.ResponseWriter, r *http.Request) {
		var req cniapi.AddRequest
		if decode(w, r, &req) {
			resp, err := ag.Add(r.Context(), req)
			answer(w, resp, err)
		}
	})
	mux.HandleFunc("POST "+cniapi.PathDel, func(w http.ResponseWriter, r *http.Request) {
		var req cniapi.Attachment
		if decode(w, r, &req) {
			answer(w, struct{}{}, ag.Del(r.Context(), req))
		}
	})
	mux.HandleFunc("POST "+cniapi.PathCheck, func(w http.ResponseWriter, r *http.Request) {
		var req cniapi.Attachment
		if decode(w, r, &req) {
			resp, err := ag.Check(r.Context(), req)
			answer(w, resp, err)
		}
	})
	mux.HandleFunc("POST "+cniapi.PathGC, func(w http.ResponseWriter, r *http.Request) {
		var req cniapi.GCRequest
		if decode(w, r, &req) {
			resp, err := ag.GC(r.Context(), req)
			answer(w, resp, err)
		}
	})
	mux.HandleFunc("GET "+cniapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		answer(w, ag.Status(r.Context()), nil)
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		answer(w, nil, &cniapi.Error{Code: cniapi.CodeInvalid, Message: "bad request body: " + err.Error()})
		return false
	}
	return true
}

func answer(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		var e *cniapi.Error
		if !errors.As(err, &e) {
			e = &cniapi.Error{Code: cniapi.CodeInternal, Message: err.Error()}
		} else if e.Message != err.Error() {
			e = &cniapi.Error{Code: e.Code, Message: err.Error()}
		}
		status := http.StatusInternalServerError
		switch e.Code {
		case cniapi.CodeInvalid:
			status = http.StatusBadRequest
		case cniapi.CodeNotFound:
			status = http.StatusNotFound
		case cniapi.CodeTryAgainLater, cniapi.CodeNotAvailable:
			status = http.StatusServiceUnavailable
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(e)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
