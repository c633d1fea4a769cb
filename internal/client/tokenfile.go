package client

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenFileRefresh is how long a token read from Config.TokenFile is used
// before the file is read again. Kubernetes rewrites a projected
// ServiceAccount token at 80 % of its lifetime (an hour at least), so a
// token at most this old is always still valid.
const TokenFileRefresh = 30 * time.Second

// tokenFile is a bearer token kept in a file that another process rotates
// (a projected ServiceAccount token): read again when TokenFileRefresh has
// passed, or at once after the server refused it.
type tokenFile struct {
	path string

	mu   sync.Mutex
	tok  string
	read time.Time
}

func newTokenFile(path string) (*tokenFile, error) {
	f := &tokenFile{path: path}
	if _, err := f.token(); err != nil {
		return nil, err
	}
	return f, nil
}

// token is the file's token, read again when stale. When the file cannot
// be read any more the last token is kept: a rotation in progress.
func (f *tokenFile) token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tok != "" && time.Since(f.read) < TokenFileRefresh {
		return f.tok, nil
	}
	data, err := os.ReadFile(f.path)
	tok := strings.TrimSpace(string(data))
	switch {
	case err == nil && tok == "":
		err = fmt.Errorf("token file %s is empty", f.path)
	case err == nil:
		f.tok, f.read = tok, time.Now()
		return tok, nil
	}
	if f.tok != "" {
		return f.tok, nil
	}
	return "", fmt.Errorf("read token: %w", err)
}

// refused makes the next request read the file again.
func (f *tokenFile) refused() {
	f.mu.Lock()
	f.read = time.Time{}
	f.mu.Unlock()
}
