package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/server"
)

// agentPod creates a pod of serviceAccount on node (no kubelet runs it:
// the object is enough to bind a token to).
func agentPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, serviceAccount, node string) *corev1.Pod {
	t.Helper()
	no := false
	p, err := cs.CoreV1().Pods(agentNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: serviceAccount, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "agent", Image: "terrane:test"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	return p
}

// requestToken asks the TokenRequest API for a token of serviceAccount,
// bound to pod when it is not nil.
func requestToken(t *testing.T, ctx context.Context, cs kubernetes.Interface, serviceAccount, audience string, pod *corev1.Pod) string {
	t.Helper()
	exp := int64(3600)
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	res, err := cs.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request for %s: %v", serviceAccount, err)
	}
	return res.Status.Token
}

// reissue re-signs tok's claims, changed by edit, with the API server's
// service-account key: a token the TokenRequest API would not issue.
func reissue(t *testing.T, keyFile, tok string, edit func(claims map[string]any)) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	edit(claims)
	payload, err = json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	pemData, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemData)
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64) // ES256: r and s, 32 bytes each
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestTokenReview: against a real kube-apiserver, a token of the
// agents' ServiceAccount bound to a pod on node-a authenticates as node
// node-a, which may act on its own host and not on another; a token of
// another ServiceAccount, for another audience, without a node claim,
// expired, garbage, or bound to a pod since deleted is refused.
func TestTokenReview(t *testing.T) {
	c, cs := testCluster(t)
	ctx := testCtx(t)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{agentSA, "other"} {
		if _, err := cs.CoreV1().ServiceAccounts(agentNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createNode(t, ctx, cs, "node-a", "192.0.2.1", nil)
	createNode(t, ctx, cs, "node-b", "192.0.2.2", nil)
	podA := agentPod(t, ctx, cs, "agent-a", agentSA, "node-a")
	otherA := agentPod(t, ctx, cs, "other-a", "other", "node-a")
	goneA := agentPod(t, ctx, cs, "agent-gone", agentSA, "node-a")

	var now time.Time // zero: the real clock
	tr, err := NewTokenReview(TokenReviewOptions{Client: cs, ServiceAccount: agentNS + "/" + agentSA, CacheTTL: time.Minute,
		Now: func() time.Time {
			if now.IsZero() {
				return time.Now()
			}
			return now
		}})
	if err != nil {
		t.Fatal(err)
	}
	authAs := func(tok string) (server.Identity, error) {
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return tr.Authenticate(r)
	}

	good := requestToken(t, ctx, cs, agentSA, DefaultAudience, podA)
	id, err := authAs(good)
	if err != nil || id != (server.Identity{Name: "node-a", Role: server.RoleNode}) {
		t.Fatalf("the agent's pod-bound token: %+v, %v", id, err)
	}

	gone := requestToken(t, ctx, cs, agentSA, DefaultAudience, goneA)
	if _, err := authAs(gone); err != nil {
		t.Fatalf("token bound to a live pod: %v", err)
	}
	// Without a kubelet a graceful deletion never completes: force it.
	var zero int64
	if err := cs.CoreV1().Pods(agentNS).Delete(ctx, goneA.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"another service account":        requestToken(t, ctx, cs, "other", DefaultAudience, otherA),
		"another audience":               requestToken(t, ctx, cs, agentSA, "https://kubernetes.default.svc", podA),
		"no node claim (not pod-bound)":  requestToken(t, ctx, cs, agentSA, DefaultAudience, nil),
		"garbage":                        "not-a-token-0123456789",
		"garbage JWT":                    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln",
		"tampered":                       good[:len(good)-4] + "AAAA",
		"expired":                        reissue(t, c.ServiceAccountKeyFile, good, func(cl map[string]any) { cl["exp"] = time.Now().Add(-10 * time.Minute).Unix() }),
		"signed by the key, for another": reissue(t, c.ServiceAccountKeyFile, good, func(cl map[string]any) { cl["aud"] = []string{"elsewhere"} }),
	}
	for what, tok := range refused {
		if id, err := authAs(tok); !errors.Is(err, errRefused) {
			t.Errorf("%s: authenticated as %+v (%v), want refused", what, id, err)
		}
	}
	// The deleted pod's token was cached as valid, here and in the API
	// server (10 s): past both it is refused.
	deadline := time.Now().Add(30 * time.Second)
	for now = time.Now(); ; {
		now = now.Add(2 * time.Minute) // past our cache each time
		_, err := authAs(gone)
		if errors.Is(err, errRefused) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token bound to a deleted pod is still accepted: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	now = time.Time{}

	// Through the API: node-a acts on its own host only.
	state := testState(t)
	url := serveAPI(t, state, tr)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(client.Config{Server: url, TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	zoneA := map[string]string{"topology.kubernetes.io/zone": "a", "example.com/rack": "1"}
	if _, err := agent.RegisterHost(ctx, "node-a", api.HostRequest{Labels: zoneA}); err != nil {
		t.Fatalf("node-a registers itself: %v", err)
	}
	if _, err := agent.ClaimBlock(ctx, "node-a", "pods"); err != nil {
		t.Fatalf("node-a claims a block: %v", err)
	}
	var ae *client.APIError
	if _, err := agent.RegisterHost(ctx, "node-b", api.HostRequest{Labels: zoneA}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("node-a registers node-b: %v, want 403", err)
	}
	if _, err := agent.ApplyTopology(ctx, api.TopologyRequest{Topology: testTopology}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("node-a applies a topology: %v, want 403", err)
	}
	other, err := client.New(client.Config{Server: url, Token: refused["another service account"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Hosts(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("another service account's token: %v, want 401", err)
	}
}

// TestTokenReviewCache: a verified token is trusted from the cache for
// CacheTTL but never past its own expiry; a refusal is remembered briefly;
// an API server that does not answer is asked again on the next request.
func TestTokenReviewCache(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	cs := fake.NewClientset()
	reviews, answer := 0, "ok"
	cs.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		reviews++
		tr := &authnv1.TokenReview{}
		switch answer {
		case "ok":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{DefaultAudience},
				User: authnv1.UserInfo{Username: "system:serviceaccount:" + agentNS + ":" + agentSA, Extra: map[string]authnv1.ExtraValue{NodeNameExtra: {"node-a"}}}}
		case "down":
			return true, nil, errors.New("connection refused")
		}
		return true, tr, nil
	})
	tr, err := NewTokenReview(TokenReviewOptions{Client: cs, ServiceAccount: agentNS + "/" + agentSA, CacheTTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	jwt := func(exp time.Time) string {
		claims, _ := json.Marshal(map[string]any{"exp": exp.Unix()})
		return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
	}
	auth := func(tok string) error {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := tr.Authenticate(r)
		return err
	}
	steps := []struct {
		name    string
		at      time.Duration
		tok     string
		answer  string
		ok      bool
		reviews int
	}{
		{"first use is reviewed", 0, jwt(t0.Add(30 * time.Second)), "ok", true, 1},
		{"cached", 10 * time.Second, jwt(t0.Add(30 * time.Second)), "down", true, 1},
		{"past its expiry the cache does not hold it", 31 * time.Second, jwt(t0.Add(30 * time.Second)), "ok", true, 2},
		{"long-lived token: cached for the TTL", 40 * time.Second, jwt(t0.Add(time.Hour)), "ok", true, 3},
		{"still cached", 99 * time.Second, jwt(t0.Add(time.Hour)), "refuse", true, 3},
		{"TTL over: reviewed, now refused", 101 * time.Second, jwt(t0.Add(time.Hour)), "refuse", false, 4},
		{"the refusal is remembered briefly", 102 * time.Second, jwt(t0.Add(time.Hour)), "ok", false, 4},
		{"then asked again", 104 * time.Second, jwt(t0.Add(time.Hour)), "down", false, 5},
		{"no answer is not remembered", 104 * time.Second, jwt(t0.Add(time.Hour)), "ok", true, 6},
		{"not a JWT: never sent", 200 * time.Second, "static-token-0123456789", "ok", false, 6},
	}
	for _, st := range steps {
		now, answer = t0.Add(st.at), st.answer
		err := auth(st.tok)
		if (err == nil) != st.ok || reviews != st.reviews {
			t.Fatalf("%s: err %v, %d reviews; want ok=%v after %d reviews", st.name, err, reviews, st.ok, st.reviews)
		}
		// An API server that does not answer cannot decide: the caller
		// gets 503 (try again), not 401 (give up).
		if unreached := st.answer == "down" && err != nil; unreached != errors.Is(err, server.ErrAuthUnavailable) {
			t.Errorf("%s: %v, want server.ErrAuthUnavailable exactly when the API did not answer", st.name, err)
		}
	}
}

// TestNewTokenReviewChecksOptions: the service account must be NS/NAME.
func TestNewTokenReviewChecksOptions(t *testing.T) {
	for _, sa := range []string{"", "terrane-agent", "/x", "ns/", "a/b/c"} {
		if _, err := NewTokenReview(TokenReviewOptions{Client: kubernetes.New(nil), ServiceAccount: sa}); err == nil {
			t.Errorf("service account %q accepted", sa)
		}
	}
}
