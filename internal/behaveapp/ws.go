package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keter-systemd/keter/internal/wsframe"
)

const (
	maxMessage = 1 << 20
	// closeWait bounds how long a socket that was sent a close frame
	// waits for the client's.
	closeWait = 2 * time.Second
)

// sockets are the open WebSockets: http.Server.Shutdown does not track
// hijacked connections, so on shutdown goingAway sends each a close frame
// (1001) and wait waits for them to end.
type sockets struct {
	version string
	mu      sync.Mutex
	open    map[*socket]struct{}
	leaving bool // goingAway was called: new sockets are told at once
	wg      sync.WaitGroup
}

func newSockets(version string) *sockets {
	return &sockets{version: version, open: map[*socket]struct{}{}}
}

// socket is one WebSocket connection.
type socket struct {
	conn net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex // one writer at a time
	sent bool       // a close frame was sent: no more data frames
}

// write sends f unless a close frame was sent already.
func (s *socket) write(f wsframe.Frame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sent {
		return nil
	}
	if f.Op == wsframe.Close {
		s.sent = true
	}
	s.conn.SetWriteDeadline(time.Now().Add(closeWait))
	return wsframe.Write(s.conn, f)
}

// goAway sends the close frame of a server going away and bounds the
// wait for the client's answer.
func (s *socket) goAway() {
	s.write(wsframe.CloseFrame(wsframe.GoingAway, "going away", false))
	s.conn.SetReadDeadline(time.Now().Add(closeWait))
}

// serve upgrades the request to a WebSocket and echoes each message
// prefixed with the version and a space, until either side closes.
func (ss *sockets) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "a WebSocket opens with GET", http.StatusMethodNotAllowed)
		return
	case !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !hasToken(r.Header, "Connection", "upgrade"):
		http.Error(w, "not a WebSocket upgrade", http.StatusBadRequest)
		return
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported WebSocket version", http.StatusUpgradeRequired)
		return
	case key == "":
		http.Error(w, "no Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hijacking: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s: %s\r\n\r\n",
		wsframe.Accept(key), headerVersion, ss.version)
	if err := brw.Flush(); err != nil {
		return
	}
	s := &socket{conn: conn, br: brw.Reader}
	ss.add(s)
	defer ss.remove(s)
	s.echo(ss.version)
}

func (ss *sockets) add(s *socket) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.wg.Add(1)
	ss.open[s] = struct{}{}
	if ss.leaving {
		s.goAway()
	}
}

func (ss *sockets) remove(s *socket) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.open, s)
	ss.wg.Done()
}

// goingAway sends each open socket a close frame (1001), and any opened
// later too.
func (ss *sockets) goingAway() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.leaving = true
	for s := range ss.open {
		s.goAway()
	}
}

// wait waits until every socket has ended or ctx is done.
func (ss *sockets) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { ss.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// echo reads frames until the connection ends: messages are echoed with the
// version in front, pings answered, a client's close frame answered.
func (s *socket) echo(version string) {
	var msg []byte
	var op wsframe.Op
	for {
		f, err := wsframe.Read(s.br, maxMessage)
		if err != nil {
			if errors.Is(err, wsframe.ErrProtocol) {
				s.write(wsframe.CloseFrame(wsframe.ProtocolError, err.Error(), false))
			}
			return
		}
		if !f.Masked {
			s.write(wsframe.CloseFrame(wsframe.ProtocolError, "client frames must be masked", false))
			return
		}
		switch f.Op {
		case wsframe.Ping:
			s.write(wsframe.Frame{Fin: true, Op: wsframe.Pong, Payload: f.Payload})
			continue
		case wsframe.Pong:
			continue
		case wsframe.Close:
			// An answer to our close frame, or the client's own: answered
			// with its code (write does nothing if ours went already).
			code := wsframe.CloseCode(f.Payload)
			if code == wsframe.NoStatus {
				code = wsframe.Normal
			}
			s.write(wsframe.CloseFrame(code, "", false))
			return
		case wsframe.Text, wsframe.Binary:
			if msg != nil {
				s.write(wsframe.CloseFrame(wsframe.ProtocolError, "new message inside a fragmented one", false))
				return
			}
			msg, op = append([]byte{}, f.Payload...), f.Op
		case wsframe.Continuation:
			if msg == nil {
				s.write(wsframe.CloseFrame(wsframe.ProtocolError, "continuation without a message", false))
				return
			}
			msg = append(msg, f.Payload...)
		}
		if len(msg) > maxMessage {
			s.write(wsframe.CloseFrame(wsframe.TooBig, "message too big", false))
			return
		}
		if f.Fin {
			out := append([]byte(version+" "), msg...)
			if err := s.write(wsframe.Frame{Fin: true, Op: op, Payload: out}); err != nil {
				return
			}
			msg = nil
		}
	}
}

// hasToken reports whether the comma-separated header holds token.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
