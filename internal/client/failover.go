package client

import (
	"context"
	"fmt"
	"strings"
)

// UnreachableError is the failure of a call that no server of the list
// answered: Errs[i] is what asking Servers[i] gave, in the order asked.
// errors.Is and errors.As see each of them.
type UnreachableError struct {
	Method, Path string
	Servers      []string
	Errs         []error
}

func (e *UnreachableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: no server answered", e.Method, e.Path)
	for i, err := range e.Errs {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%s: %v", sep, e.Servers[i], err)
	}
	return b.String()
}

// Unwrap gives each server's failure.
func (e *UnreachableError) Unwrap() []error { return e.Errs }

// failover runs call on the server that last answered and, while the
// server called gives no answer (Unreachable), on the next ones, each at
// most once. A server that answers becomes the one called first. With one
// server the error is that server's, unwrapped, as it always was.
func (c *Client) failover(ctx context.Context, method, path string, call func(*target) (int, error)) (int, error) {
	n := len(c.servers)
	first := int(c.last.Load())
	var failed *UnreachableError
	for i := range n {
		k := (first + i) % n
		t := c.servers[k]
		status, err := call(t)
		switch {
		case err != nil && ctx.Err() != nil:
			// The caller gave up: no other server is asked for it, and
			// this one may yet have answered.
			return status, err
		case err == nil || !Unreachable(err):
			c.last.Store(int32(k))
			return status, err
		case n == 1:
			return status, err
		}
		if failed == nil {
			failed = &UnreachableError{Method: method, Path: path}
		}
		failed.Servers = append(failed.Servers, t.name)
		failed.Errs = append(failed.Errs, err)
	}
	return 0, failed
}
