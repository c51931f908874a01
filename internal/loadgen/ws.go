package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"github.com/keter-systemd/keter/internal/wsframe"
)

const (
	wsEvery = 100 * time.Millisecond
	// wsCloseWait bounds the wait for the server's answer to a close frame.
	wsCloseWait = 2 * time.Second
)

// wsWorker opens a WebSocket, exchanges messages on it until it ends, and
// opens another, until the run stops.
func (r *Run) wsWorker(ctx context.Context) {
	for !r.stopping(ctx) {
		err := r.wsSession(ctx)
		pause := time.Duration(0)
		if errors.Is(err, errPaged) {
			err, pause = nil, failPause
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.failed(WS, "GET", "/ws", err)
			pause = failPause
		}
		if !r.sleep(ctx, pause) {
			return
		}
	}
}

// errPaged ends a session whose handshake got a maintenance page.
var errPaged = errors.New("maintenance page")

// frameOrErr is what a WebSocket's reader hands its session.
type frameOrErr struct {
	f   wsframe.Frame
	err error
}

// wsSession opens one WebSocket and sends a message every 100 ms, each once
// the last was echoed, until the server closes it, it fails or the run
// stops. A clean close by either side returns nil.
func (r *Run) wsSession(ctx context.Context) error {
	r.sent(WS)
	r.dialled(WS)
	c, err := dialWith(ctx, r.o.Dial, r.o.Addr, r.o.Timeout)
	if err != nil {
		return fail("dial", err)
	}
	defer c.c.Close()
	stopCut := context.AfterFunc(ctx, func() { c.c.Close() })
	defer stopCut()

	key := wsframe.NewKey()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.o.Host+"/ws", nil)
	if err != nil {
		return fail("write", err)
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	if r.o.Cookie != "" {
		req.Header.Set("Cookie", r.o.Cookie)
	}
	c.c.SetDeadline(time.Now().Add(r.o.Timeout))
	if err := req.Write(c.bw); err != nil {
		return fail("write", err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail("write", err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return fail("head", noEOF(err))
	}
	v := resp.Header.Get(headerVersion)
	if v != "" {
		r.started(WS, v, false)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		if r.maintenancePage(WS, resp) {
			return errPaged
		}
		return failf("status", "%s from version %q", resp.Status, v)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsframe.Accept(key) || v == "" {
		return failf("check", "handshake with accept %q and version %q", got, v)
	}
	r.ok(WS, v)
	c.c.SetDeadline(time.Time{})

	frames := make(chan frameOrErr)
	done := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			f, err := wsframe.Read(c.br, 1<<20)
			select {
			case frames <- frameOrErr{f, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(done)
		c.c.Close()
		<-read
	}()

	write := func(f wsframe.Frame) error {
		f.Masked = true
		c.c.SetWriteDeadline(time.Now().Add(r.o.Timeout))
		return wsframe.Write(c.c, f)
	}
	tick := time.NewTicker(wsEvery)
	defer tick.Stop()
	var (
		seq     int
		pending string // the message awaiting its echo
		sentAt  time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.stop:
			// Our close, then the server's answer (or not: the run ends).
			if err := write(wsframe.CloseFrame(wsframe.Normal, "load ends", true)); err != nil {
				return nil
			}
			awaitEnd(ctx, frames, func(f wsframe.Frame) bool { return f.Op == wsframe.Close })
			return nil
		case <-tick.C:
			if pending != "" {
				if time.Since(sentAt) > r.o.Timeout {
					return failf("echo", "no echo of %q from version %q in %s", pending, v, r.o.Timeout)
				}
				continue
			}
			seq++
			pending, sentAt = fmt.Sprintf("n=%d %08x", seq, rand.Uint32()), time.Now()
			r.sent(WS)
			if err := write(wsframe.Frame{Fin: true, Op: wsframe.Text, Payload: []byte(pending)}); err != nil {
				return fail("write", err)
			}
		case fe := <-frames:
			if fe.err != nil {
				// A killed server's kernel ends it with a FIN, or with a
				// reset when data was unread: a 1006 to the client either way.
				if errors.Is(fe.err, io.EOF) || errors.Is(fe.err, io.ErrUnexpectedEOF) || errors.Is(fe.err, syscall.ECONNRESET) {
					return failf("body", "version %q ended the WebSocket without a close frame (1006): %v", v, fe.err)
				}
				return fail("body", fe.err)
			}
			f := fe.f
			switch {
			case f.Masked:
				return failf("check", "a masked frame from the server")
			case f.Op == wsframe.Ping:
				if err := write(wsframe.Frame{Fin: true, Op: wsframe.Pong, Payload: f.Payload}); err != nil {
					return fail("write", err)
				}
			case f.Op == wsframe.Pong:
			case f.Op == wsframe.Close:
				code := wsframe.CloseCode(f.Payload)
				write(wsframe.CloseFrame(code, "", true))
				// The server ends the TCP connection first.
				awaitEnd(ctx, frames, func(wsframe.Frame) bool { return false })
				if code != wsframe.Normal && code != wsframe.GoingAway {
					return failf("body", "version %q closed the WebSocket with code %d %q", v, code, f.Payload[min(2, len(f.Payload)):])
				}
				r.closed(WS)
				return nil
			case f.Op == wsframe.Text && f.Fin:
				want := v + " " + pending
				if pending == "" || string(f.Payload) != want {
					return failf("check", "message %q, want %q", f.Payload, want)
				}
				r.started(WS, v, true)
				r.ok(WS, v)
				pending = ""
			default:
				return failf("check", "unexpected frame %#x fin %t", f.Op, f.Fin)
			}
		}
	}
}

// awaitEnd reads frames until the connection ends, last reports a frame
// as the last awaited, or wsCloseWait passes.
func awaitEnd(ctx context.Context, frames <-chan frameOrErr, last func(wsframe.Frame) bool) {
	timeout := time.NewTimer(wsCloseWait)
	defer timeout.Stop()
	for {
		select {
		case fe := <-frames:
			if fe.err != nil || last(fe.f) {
				return
			}
		case <-timeout.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
