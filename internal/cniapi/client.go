package cniapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// ErrAgentUnreachable wraps a failure to reach the agent at all (no
// socket, connection refused, no answer in time): the caller may queue a
// release.
var ErrAgentUnreachable = errors.New("the terrane agent is not reachable")

// Client calls the agent over its socket. It speaks just enough HTTP for
// one request per connection (HTTP/1.0: the answer runs to the close, never
// chunked), so the plugin does not link net/http and its TLS, HTTP/2 and
// compression, whose package initialisation each plugin process would pay.
type Client struct {
	socket  string
	timeout time.Duration
}

// NewClient returns a client for the agent at socket. timeout bounds each
// call (0: 30 s).
func NewClient(socket string, timeout time.Duration) *Client {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return &Client{socket: socket, timeout: timeout}
}

// Add asks for the pod's address.
func (c *Client) Add(ctx context.Context, req AddRequest) (AddResponse, error) {
	var resp AddResponse
	return resp, c.call(ctx, "POST", PathAdd, req, &resp)
}

// Del releases an attachment; releasing one the agent does not hold succeeds.
func (c *Client) Del(ctx context.Context, a Attachment) error {
	return c.call(ctx, "POST", PathDel, a, nil)
}

// Check returns what the agent holds for an attachment.
func (c *Client) Check(ctx context.Context, a Attachment) (CheckResponse, error) {
	var resp CheckResponse
	return resp, c.call(ctx, "POST", PathCheck, a, &resp)
}

// GC releases every attachment not in req.Valid.
func (c *Client) GC(ctx context.Context, req GCRequest) (GCResponse, error) {
	var resp GCResponse
	return resp, c.call(ctx, "POST", PathGC, req, &resp)
}

// Status asks whether the agent can serve ADDs.
func (c *Client) Status(ctx context.Context) (StatusResponse, error) {
	var resp StatusResponse
	return resp, c.call(ctx, "GET", PathStatus, nil, &resp)
}

// maxAnswer bounds an answer's body.
const maxAnswer = 1 << 20

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	status, data, err := c.roundTrip(ctx, method, path, body)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		e := &Error{}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e = &Error{Code: CodeInternal, Message: fmt.Sprintf("agent answered %d: %s", status, bytes.TrimSpace(data))}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode the agent's answer: %w", err)
	}
	return nil
}

// roundTrip sends one request on a new connection and returns the
// answer's status code and body. Every failure before the answer's header
// is complete is ErrAgentUnreachable, as it was for net/http's client.
func (c *Client) roundTrip(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	unreachable := func(err error) error {
		if ctx.Err() != nil { // the deadline AfterFunc set, or the caller's
			err = fmt.Errorf("%v (%w)", err, ctx.Err())
		}
		return fmt.Errorf("%w at %s: %w", ErrAgentUnreachable, c.socket, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return 0, nil, unreachable(err)
	}
	defer conn.Close()
	// The end of ctx (the timeout, or the caller's) ends any read or write.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := make([]byte, 0, 160+len(body))
	req = append(req, method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.0\r\nHost: terrane-agent\r\n"...)
	if body != nil {
		req = append(req, "Content-Type: application/json\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, body...)
	if _, err := conn.Write(req); err != nil {
		return 0, nil, unreachable(err)
	}
	raw, err := io.ReadAll(io.LimitReader(conn, maxAnswer+64<<10))
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		if err == nil {
			err = fmt.Errorf("the answer %q has no complete header", truncate(raw))
		}
		return 0, nil, unreachable(err)
	}
	status, length, perr := parseHeader(raw[:end])
	if perr != nil {
		return 0, nil, unreachable(perr)
	}
	data := raw[end+4:]
	switch {
	case err != nil:
		return 0, nil, fmt.Errorf("read the agent's answer: %w", err)
	case len(data) > maxAnswer:
		return 0, nil, fmt.Errorf("read the agent's answer: longer than %d bytes", maxAnswer)
	case length >= 0 && len(data) != length:
		return 0, nil, fmt.Errorf("read the agent's answer: %d bytes of %d", len(data), length)
	}
	return status, data, nil
}

// parseHeader reads an answer's status code and Content-Length (-1 when
// absent) from its header.
func parseHeader(h []byte) (status, length int, err error) {
	lines := bytes.Split(h, []byte("\r\n"))
	f := bytes.SplitN(lines[0], []byte(" "), 3)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, 0, fmt.Errorf("the answer's status line %q is not HTTP/1", truncate(lines[0]))
	}
	if status, err = strconv.Atoi(string(f[1])); err != nil || status < 100 || status > 999 {
		return 0, 0, fmt.Errorf("the answer's status line %q has no status code", truncate(lines[0]))
	}
	length = -1
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil || length < 0 {
				return 0, 0, fmt.Errorf("the answer's Content-Length %q is not a length", truncate(value))
			}
		}
	}
	return status, length, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
