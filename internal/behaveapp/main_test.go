package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/internal/wsframe"
)

func TestEcho(t *testing.T) {
	srv := httptest.NewServer(newApp("v7", false).routes())
	defer srv.Close()
	empty := sha256.Sum256(nil)
	sum := sha256.Sum256([]byte("hello"))
	for _, tc := range []struct {
		name, method, path, body, want string
	}{
		{"root", "GET", "/", "", "behaveapp v7 0 " + hex.EncodeToString(empty[:]) + "\n"},
		{"one GET", "GET", "/one", "", "one v7 0 " + hex.EncodeToString(empty[:]) + "\n"},
		{"one POST", "POST", "/one", "hello", "one v7 5 " + hex.EncodeToString(sum[:]) + "\n"},
		{"split POST", "POST", "/split", "hello", "split v7 5 " + hex.EncodeToString(sum[:]) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want || resp.Header.Get(headerVersion) != "v7" {
				t.Fatalf("got %q (version %q), want %q", b, resp.Header.Get(headerVersion), tc.want)
			}
		})
	}
}

func TestDownloadChecksum(t *testing.T) {
	a := newApp("v1", false)
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/download")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n != downloadSize || hex.EncodeToString(h.Sum(nil)) != resp.Header.Get(headerSHA256) {
		t.Fatalf("read %d bytes, sha256 %x, header %s", n, h.Sum(nil), resp.Header.Get(headerSHA256))
	}
}

func TestWebSocketEchoAndGoingAway(t *testing.T) {
	a := newApp("v3", false)
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := wsframe.NewKey()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+key+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsframe.Accept(key) {
		t.Fatalf("handshake answered %s, accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	// A fragmented message, a ping between its parts.
	for _, f := range []wsframe.Frame{
		{Op: wsframe.Text, Masked: true, Payload: []byte("hel")},
		{Fin: true, Op: wsframe.Ping, Masked: true, Payload: []byte("p")},
		{Fin: true, Op: wsframe.Continuation, Masked: true, Payload: []byte("lo")},
	} {
		if err := wsframe.Write(conn, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []wsframe.Frame{
		{Fin: true, Op: wsframe.Pong, Payload: []byte("p")},
		{Fin: true, Op: wsframe.Text, Payload: []byte("v3 hello")},
	} {
		f, err := wsframe.Read(br, 1024)
		if err != nil {
			t.Fatal(err)
		}
		if f.Op != want.Op || string(f.Payload) != string(want.Payload) {
			t.Fatalf("read %v %q, want %v %q", f.Op, f.Payload, want.Op, want.Payload)
		}
	}
	a.sockets.goingAway()
	f, err := wsframe.Read(br, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if f.Op != wsframe.Close || wsframe.CloseCode(f.Payload) != wsframe.GoingAway {
		t.Fatalf("read %v %q, want a close frame 1001", f.Op, f.Payload)
	}
	if err := wsframe.Write(conn, wsframe.CloseFrame(wsframe.GoingAway, "", true)); err != nil {
		t.Fatal(err)
	}
	if err := a.sockets.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the close handshake: %v, want EOF", err)
	}
}
