package policybench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// acceptServer answers every TCP connection on a port of a namespace with
// one byte and closes it.
type acceptServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startAcceptServer(ns string, port int) (*acceptServer, error) {
	s := &acceptServer{}
	if err := inNetns(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen on %d in %s: %w", port, ns, err)
	}
	for range 2 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := s.ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				_, _ = c.Write([]byte{1})
				c.Close()
			}
		}()
	}
	return s, nil
}

func (s *acceptServer) close() {
	s.ln.Close()
	s.wg.Wait()
}

// connRate opens TCP connections from namespace ns to dst for d, workers
// at a time, each a full exchange: connect, read the server's byte, close
// with a reset (no TIME_WAIT to run the ports out). It returns connections
// per second and how many attempts failed.
func connRate(ctx context.Context, ns string, dst netip.AddrPort, d time.Duration, workers int) (float64, int64, error) {
	var ok, failed atomic.Int64
	deadline := time.Now().Add(d)
	errc := make(chan error, workers)
	start := time.Now()
	for range workers {
		go func() {
			errc <- inNetns(ns, func() error {
				buf := make([]byte, 1)
				dialer := net.Dialer{Timeout: time.Second}
				for time.Now().Before(deadline) {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					c, err := dialer.DialContext(ctx, "tcp4", dst.String())
					if err != nil {
						failed.Add(1)
						continue
					}
					_ = c.SetDeadline(time.Now().Add(time.Second))
					_, err = c.Read(buf)
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
					if err != nil {
						failed.Add(1)
						continue
					}
					ok.Add(1)
				}
				return nil
			})
		}()
	}
	var errs []error
	for range workers {
		errs = append(errs, <-errc)
	}
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, failed.Load(), err
	}
	return float64(ok.Load()) / elapsed.Seconds(), failed.Load(), nil
}

// reachable reports whether a TCP connection from ns to dst completes
// within timeout (a dropped SYN times out).
func reachable(ns string, dst netip.AddrPort, timeout time.Duration) (bool, error) {
	var ok bool
	err := inNetns(ns, func() error {
		c, err := net.DialTimeout("tcp4", dst.String(), timeout)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok, err
}
