package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"
)

// failPause is how long a worker waits after a failure before the next
// request, so that a dead server is not dialled in a tight loop.
const failPause = 100 * time.Millisecond

// conn is a worker's kept connection.
type conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func dial(ctx context.Context, addr string, timeout time.Duration) (*conn, error) {
	return dialWith(ctx, nil, addr, timeout)
}

// dialWith dials with f, or a plain TCP dialer when f is nil.
func dialWith(ctx context.Context, f DialFunc, addr string, timeout time.Duration) (*conn, error) {
	if f == nil {
		d := net.Dialer{Timeout: timeout}
		f = d.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := f(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, br: bufio.NewReaderSize(c, 64<<10), bw: bufio.NewWriter(c)}, nil
}

// idle reports whether the connection can take a request: nothing unread,
// no end (FIN) or reset from the server. It peeks at the socket without
// blocking.
func (c *conn) idle() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	tc, ok := c.c.(*net.TCPConn)
	if !ok {
		return true
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// Nothing to read is what an idle connection has; bytes, an end
		// or an error mean it cannot take a request.
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && alive
}

// httpWorker issues requests of one behaviour and method until the run
// stops.
func (r *Run) httpWorker(ctx context.Context, b Behaviour, method string) {
	var c *conn
	defer func() {
		if c != nil {
			c.c.Close()
		}
	}()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	path := "/" + string(b)
	for !r.stopping(ctx) {
		keep, err := r.exchange(ctx, &c, b, method, path, rng)
		if !keep && c != nil {
			c.c.Close()
			c = nil
		}
		pause := r.o.Pause
		if err != nil {
			if ctx.Err() != nil {
				return // cut by the context: not the server's failure
			}
			r.failed(b, method, path, err)
			pause = max(pause, failPause)
		}
		if !r.sleep(ctx, pause) {
			return
		}
	}
}

// exchange writes one request on *c (dialling when there is no usable
// connection), reads and checks its answer, and reports whether the
// connection may be kept.
func (r *Run) exchange(ctx context.Context, c **conn, b Behaviour, method, path string, rng *rand.Rand) (keep bool, err error) {
	if *c != nil && !(*c).idle() {
		(*c).c.Close()
		*c = nil
	}
	r.sent(b)
	if *c == nil {
		r.dialled(b)
		nc, err := dialWith(ctx, r.o.Dial, r.o.Addr, r.o.Timeout)
		if err != nil {
			return false, fail("dial", err)
		}
		*c = nc
	}
	cn := *c
	var body []byte
	if method == http.MethodPost {
		body = make([]byte, rng.IntN(64<<10+1))
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
	}
	sum := sha256.Sum256(body)
	sent := sentBody{n: int64(len(body)), sha256: hex.EncodeToString(sum[:])}
	req, err := http.NewRequest(method, "http://"+r.o.Host+path, bytes.NewReader(body))
	if err == nil && r.o.Cookie != "" {
		req.Header.Set("Cookie", r.o.Cookie)
	}
	if err != nil {
		return false, fail("write", err)
	}
	if method == http.MethodGet {
		req.Body, req.ContentLength = nil, 0
	}

	cn.c.SetDeadline(time.Now().Add(r.o.Timeout))
	// The context's end cuts the exchange at once.
	defer context.AfterFunc(ctx, func() { cn.c.SetDeadline(time.Now()) })()
	if err := req.Write(cn.bw); err != nil {
		return false, fail("write", err)
	}
	if err := cn.bw.Flush(); err != nil {
		return false, fail("write", err)
	}
	resp, err := http.ReadResponse(cn.br, req)
	if err != nil {
		return false, fail("head", noEOF(err))
	}
	defer resp.Body.Close()
	v := resp.Header.Get(headerVersion)
	if v != "" {
		r.started(b, v, true)
	}
	if resp.StatusCode != http.StatusOK {
		if r.maintenancePage(b, resp) {
			_, err := io.Copy(io.Discard, resp.Body)
			return err == nil && !resp.Close, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return false, failf("status", "%s from version %q", resp.Status, v)
	}
	if err := check(b, resp, v, sent); err != nil {
		return false, err
	}
	r.ok(b, v)
	cn.c.SetDeadline(time.Time{})
	return !resp.Close, nil
}

// noEOF names an end of the connection where an answer was due.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("connection closed: " + err.Error())
	}
	return err
}
