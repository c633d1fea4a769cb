package cnihttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
)

// agent answers from its fields; block, when set, holds Status until the
// caller gives up.
type agent struct {
	addErr   error
	released int
	block    chan struct{}
}

func (a *agent) Add(_ context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error) {
	if a.addErr != nil {
		return cniapi.AddResponse{}, a.addErr
	}
	return cniapi.AddResponse{Network: "blue", Addr: netip.MustParsePrefix("10.1.0.5/32"), Gateway: cniapi.GatewayV4, GSOMaxSize: 131072}, nil
}
func (a *agent) Del(context.Context, cniapi.Attachment) error { return nil }
func (a *agent) Check(_ context.Context, at cniapi.Attachment) (cniapi.CheckResponse, error) {
	return cniapi.CheckResponse{}, &cniapi.Error{Code: cniapi.CodeNotFound, Message: "no address for " + at.ID()}
}
func (a *agent) GC(_ context.Context, req cniapi.GCRequest) (cniapi.GCResponse, error) {
	resp := cniapi.GCResponse{Released: []cniapi.Attachment{}}
	for i := range a.released {
		resp.Released = append(resp.Released, cniapi.Attachment{ContainerID: fmt.Sprintf("container-%06d", i), IfName: "eth0"})
	}
	return resp, nil
}
func (a *agent) Status(ctx context.Context) cniapi.StatusResponse {
	if a.block != nil {
		select {
		case <-a.block:
		case <-ctx.Done():
		}
	}
	return cniapi.StatusResponse{Ready: true}
}

func serve(t *testing.T, a *agent) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(a)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestClientAgainstHandler: the plugin's Client, which speaks HTTP without
// net/http, against the agent's net/http Handler: answers, errors with
// their CNI codes, an answer too long for net/http to give it a length,
// and the failures that count as an unreachable agent.
func TestClientAgainstHandler(t *testing.T) {
	ctx := t.Context()
	a := &agent{}
	c := cniapi.NewClient(serve(t, a), 5*time.Second)

	resp, err := c.Add(ctx, cniapi.AddRequest{Attachment: cniapi.Attachment{ContainerID: "c1", IfName: "eth0"}, HostVeth: "trn0"})
	if err != nil || resp.Addr != netip.MustParsePrefix("10.1.0.5/32") || resp.Gateway != cniapi.GatewayV4 || resp.GSOMaxSize != 131072 {
		t.Errorf("Add = %+v, %v", resp, err)
	}
	if err := c.Del(ctx, cniapi.Attachment{ContainerID: "c1", IfName: "eth0"}); err != nil {
		t.Errorf("Del: %v", err)
	}
	if st, err := c.Status(ctx); err != nil || !st.Ready {
		t.Errorf("Status = %+v, %v", st, err)
	}

	var e *cniapi.Error
	if _, err := c.Check(ctx, cniapi.Attachment{ContainerID: "c2", IfName: "eth0"}); !errors.As(err, &e) || e.Code != cniapi.CodeNotFound || e.Message != "no address for c2/eth0" {
		t.Errorf("Check of an unknown attachment: %v, want code %d", err, cniapi.CodeNotFound)
	}
	a.addErr = &cniapi.Error{Code: cniapi.CodeTryAgainLater, Message: "blocks full"}
	if _, err := c.Add(ctx, cniapi.AddRequest{}); !errors.As(err, &e) || e.Code != cniapi.CodeTryAgainLater {
		t.Errorf("Add refused: %v, want code %d", err, cniapi.CodeTryAgainLater)
	}
	a.addErr = errors.New("disk on fire")
	if _, err := c.Add(ctx, cniapi.AddRequest{}); !errors.As(err, &e) || e.Code != cniapi.CodeInternal || e.Message != "disk on fire" {
		t.Errorf("Add failed: %v, want code %d", err, cniapi.CodeInternal)
	}

	// 5,000 attachments: far past the server's buffer, so its answer has
	// no Content-Length and ends at the close.
	a.released = 5000
	gc, err := c.GC(ctx, cniapi.GCRequest{Valid: []cniapi.Attachment{}})
	if err != nil || len(gc.Released) != 5000 || gc.Released[4999].ContainerID != "container-004999" {
		t.Errorf("GC: %d released, %v", len(gc.Released), err)
	}

	gone := cniapi.NewClient(filepath.Join(t.TempDir(), "none.sock"), time.Second)
	if err := gone.Del(ctx, cniapi.Attachment{ContainerID: "c1", IfName: "eth0"}); !errors.Is(err, cniapi.ErrAgentUnreachable) {
		t.Errorf("no socket: %v, want ErrAgentUnreachable", err)
	}

	a.block = make(chan struct{})
	defer close(a.block)
	slow := cniapi.NewClient(serve(t, a), 100*time.Millisecond)
	start := time.Now()
	if _, err := slow.Status(ctx); !errors.Is(err, cniapi.ErrAgentUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an agent that does not answer: %v, want ErrAgentUnreachable and the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout of 100 ms took %s", d)
	}
}

// TestClientRefusesBrokenAnswers: an answer that is not HTTP, or whose
// body is shorter than its length, is an error, never a decoded zero value.
func TestClientRefusesBrokenAnswers(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"not HTTP", "hello\r\n\r\n{}"},
		{"no status code", "HTTP/1.1 OK\r\n\r\n{}"},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"ready\":true}"},
		{"no header end", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "agent.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				buf := make([]byte, 4096)
				_, _ = conn.Read(buf)
				_, _ = conn.Write([]byte(tc.answer))
			}()
			st, err := cniapi.NewClient(sock, 5*time.Second).Status(t.Context())
			if err == nil {
				t.Errorf("answer %q: %+v, want an error", tc.answer, st)
			}
		})
	}
}
