package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Role is what an identity may do.
type Role string

const (
	// RoleAdmin may do everything, including changing the topology.
	RoleAdmin Role = "admin"
	// RoleNode may register only its own host and claim, release and
	// allocate only on it.
	RoleNode Role = "node"
)

// Identity is an authenticated caller.
type Identity struct {
	Name string // for a node: its host name
	Role Role
}

// Authenticator names the caller of a request.
type Authenticator interface {
	Authenticate(r *http.Request) (Identity, error)
}

var errUnauthenticated = errors.New("unauthenticated")

// ErrAuthUnavailable: an authenticator could not decide now (the service
// it asks, e.g. the Kubernetes API for TokenReview, did not answer). The
// caller is answered 503, not 401: its credentials may well be good, and an
// agent retries a 503 where it gives up on a 401.
var ErrAuthUnavailable = errors.New("credentials cannot be verified now")

// TokenAuth authenticates bearer tokens. Tokens are compared in constant
// time.
type TokenAuth struct {
	tokens []tokenEntry
}

type tokenEntry struct {
	token []byte
	id    Identity
}

// ParseTokens reads a token file: one "TOKEN ROLE NAME" per line (role
// admin or node; for a node, NAME is its host name); # starts a comment.
func ParseTokens(data []byte) (*TokenAuth, error) {
	ta := &TokenAuth{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("token file line %d: want TOKEN ROLE NAME, got %d fields", i+1, len(f))
		}
		role := Role(f[1])
		if role != RoleAdmin && role != RoleNode {
			return nil, fmt.Errorf("token file line %d: role %q: use admin or node", i+1, f[1])
		}
		if len(f[0]) < 16 {
			return nil, fmt.Errorf("token file line %d: token is %d characters; use at least 16 (e.g. openssl rand -hex 24)", i+1, len(f[0]))
		}
		for _, e := range ta.tokens {
			if string(e.token) == f[0] {
				return nil, fmt.Errorf("token file line %d: the token is already given to %s; each identity needs its own", i+1, e.id.Name)
			}
		}
		ta.tokens = append(ta.tokens, tokenEntry{token: []byte(f[0]), id: Identity{Name: f[2], Role: role}})
	}
	if len(ta.tokens) == 0 {
		return nil, errors.New("token file holds no tokens")
	}
	return ta, nil
}

// Authenticate implements Authenticator.
func (ta *TokenAuth) Authenticate(r *http.Request) (Identity, error) {
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return Identity{}, errUnauthenticated
	}
	var found *Identity
	for i := range ta.tokens {
		if subtle.ConstantTimeCompare(ta.tokens[i].token, []byte(tok)) == 1 {
			found = &ta.tokens[i].id
		}
	}
	if found == nil {
		return Identity{}, errUnauthenticated
	}
	return *found, nil
}

// CertAuth authenticates TLS client certificates the server's CA issued:
// the common name is the identity's name, the first organization its role.
type CertAuth struct{}

// Authenticate implements Authenticator.
func (CertAuth) Authenticate(r *http.Request) (Identity, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return Identity{}, errUnauthenticated
	}
	c := r.TLS.VerifiedChains[0][0]
	if len(c.Subject.Organization) == 0 {
		return Identity{}, errUnauthenticated
	}
	role := Role(c.Subject.Organization[0])
	if role != RoleAdmin && role != RoleNode {
		return Identity{}, errUnauthenticated
	}
	return Identity{Name: c.Subject.CommonName, Role: role}, nil
}

// AnyAuth tries each authenticator in turn.
type AnyAuth []Authenticator

// Authenticate implements Authenticator.
func (a AnyAuth) Authenticate(r *http.Request) (Identity, error) {
	var unavailable error
	for _, x := range a {
		id, err := x.Authenticate(r)
		if err == nil {
			return id, nil
		}
		if errors.Is(err, ErrAuthUnavailable) {
			unavailable = err
		}
	}
	if unavailable != nil {
		return Identity{}, unavailable
	}
	return Identity{}, errUnauthenticated
}

// insecureAuth makes every caller an admin: only with --insecure.
type insecureAuth struct{}

func (insecureAuth) Authenticate(*http.Request) (Identity, error) {
	return Identity{Name: "insecure", Role: RoleAdmin}, nil
}

// mayActOnHost: admins on any host, nodes only on themselves (invariant 5).
func mayActOnHost(id Identity, host string) error {
	if id.Role == RoleAdmin || (id.Role == RoleNode && id.Name == host) {
		return nil
	}
	return fmt.Errorf("identity %s (%s) may act only on host %s, not %s", id.Name, id.Role, id.Name, host)
}
