package client_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
)

// TestTokenFile: the token is read from the file; after the server
// refuses it, the next request reads the file again (rotated meanwhile);
// a file that cannot be read at start is an error, and Token with
// TokenFile is refused.
func TestTokenFile(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("not-a-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, TokenFile: path})
	_, err := c.Hosts(ctx)
	apiError(t, err, 401, "")
	// Rotated: written beside and renamed over, as the kubelet does.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(clienttest.AdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Hosts(ctx); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(client.Config{Server: srv.URL, TokenFile: path}); err == nil || !strings.Contains(err.Error(), "read token") {
		t.Fatalf("missing token file: %v", err)
	}
	if _, err := client.New(client.Config{Server: srv.URL, Token: clienttest.AdminToken, TokenFile: path}); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("token and token file: %v", err)
	}
}
