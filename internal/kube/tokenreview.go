package kube

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/server"
)

// NodeNameExtra is the key of the TokenReview's extra user information
// that names the node a pod-bound ServiceAccount token's pod runs on (the
// token's kubernetes.io.node claim, Kubernetes 1.30 and later).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// DefaultAudience is the audience agents' tokens must be issued for: a
// token meant for the Kubernetes API (or anything else) is not accepted.
const DefaultAudience = "terrane"

// Cache bounds: a refused token is remembered briefly (a flood of garbage
// costs one review per token, not one per request), and the cache is
// swept when it reaches maxCached entries.
const (
	defaultCacheTTL = 10 * time.Second
	refusedTTL      = 2 * time.Second
	maxCached       = 4096
	reviewTimeout   = 5 * time.Second
)

// TokenReviewOptions configure TokenReview.
type TokenReviewOptions struct {
	Client kubernetes.Interface
	// Audience the token must be issued for (default DefaultAudience).
	Audience string
	// ServiceAccount is the agents' ServiceAccount, "namespace/name": a
	// token of any other is refused.
	ServiceAccount string
	// CacheTTL is how long a verified token is trusted without asking
	// again (default 10 s), never past the token's own expiry.
	CacheTTL time.Duration
	Log      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// TokenReview authenticates bearer tokens with the Kubernetes TokenReview
// API: only a token of the agents' ServiceAccount, for Terrane's audience,
// bound to a pod on a node, is accepted, as that node's identity.
type TokenReview struct {
	o        TokenReviewOptions
	username string // system:serviceaccount:NS:NAME

	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	id      server.Identity
	err     error
	expires time.Time
}

var _ server.Authenticator = (*TokenReview)(nil)

// NewTokenReview checks o.
func NewTokenReview(o TokenReviewOptions) (*TokenReview, error) {
	ns, name, ok := strings.Cut(o.ServiceAccount, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("agent service account %q: want NAMESPACE/NAME", o.ServiceAccount)
	}
	if o.Client == nil {
		return nil, errors.New("token review needs a Kubernetes client")
	}
	if o.Audience == "" {
		o.Audience = DefaultAudience
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = defaultCacheTTL
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &TokenReview{o: o, username: "system:serviceaccount:" + ns + ":" + name, cache: map[[32]byte]cached{}}, nil
}

// errRefused is every refusal's cause: the caller learns only 401.
var errRefused = errors.New("token refused")

// Authenticate implements server.Authenticator.
func (t *TokenReview) Authenticate(r *http.Request) (server.Identity, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	// Only a JWT can be a ServiceAccount token: anything else (a Terrane
	// token the token file did not know) is not sent to the API server.
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.Count(tok, ".") != 2 {
		return server.Identity{}, errRefused
	}
	key := sha256.Sum256([]byte(tok))
	now := t.o.Now()
	t.mu.Lock()
	c, hit := t.cache[key]
	t.mu.Unlock()
	if hit && now.Before(c.expires) {
		return c.id, c.err
	}
	ctx, cancel := context.WithTimeout(r.Context(), reviewTimeout)
	defer cancel()
	id, err, final := t.review(ctx, tok)
	if !final {
		return id, err // the API server did not answer: ask again next time
	}
	ttl := t.o.CacheTTL
	if err != nil {
		ttl = min(ttl, refusedTTL)
	}
	if exp, ok := expiry(tok); ok {
		ttl = min(ttl, exp.Sub(now))
	}
	if ttl > 0 {
		t.remember(key, cached{id: id, err: err, expires: now.Add(ttl)}, now)
	}
	return id, err
}

// review asks the API server; final is false when it did not answer (the
// result must not be cached).
func (t *TokenReview) review(ctx context.Context, tok string) (id server.Identity, err error, final bool) {
	res, err := t.o.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: tok, Audiences: []string{t.o.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.o.Log.Warn("token review failed: the Kubernetes API did not answer", "err", err)
		return server.Identity{}, fmt.Errorf("%w: the Kubernetes API did not answer the token review", server.ErrAuthUnavailable), false
	}
	st := res.Status
	refuse := func(why string, args ...any) (server.Identity, error, bool) {
		t.o.Log.Debug("token refused", append([]any{"reason", why}, args...)...)
		return server.Identity{}, errRefused, true
	}
	switch {
	case !st.Authenticated:
		return refuse("not authenticated", "error", st.Error)
	case !slices.Contains(st.Audiences, t.o.Audience):
		return refuse("wrong audience", "audiences", st.Audiences)
	case st.User.Username != t.username:
		return refuse("not the agents' service account", "user", st.User.Username)
	}
	nodes := st.User.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return refuse("no node claim: not a token bound to a pod on a node", "user", st.User.Username)
	}
	if err := api.ValidateName("host", nodes[0]); err != nil {
		return refuse("node name is no host name", "node", nodes[0])
	}
	return server.Identity{Name: nodes[0], Role: server.RoleNode}, nil, true
}

func (t *TokenReview) remember(key [32]byte, c cached, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.cache) >= maxCached {
		for k, v := range t.cache {
			if !now.Before(v.expires) {
				delete(t.cache, k)
			}
		}
		if len(t.cache) >= maxCached {
			clear(t.cache)
		}
	}
	t.cache[key] = c
}

// expiry reads a JWT's exp claim without verifying it: only to keep a
// token the API server accepted no longer in the cache than it is valid.
func expiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	return time.Unix(*claims.Exp, 0), true
}
