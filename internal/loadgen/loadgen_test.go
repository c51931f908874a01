package loadgen

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// app is internal/behaveapp running on a loopback port.
type app struct {
	addr string
	cmd  *exec.Cmd
	exit chan error
}

// startApp runs behaveapp --version version and waits until it listens.
func startApp(t *testing.T, version string) *app {
	t.Helper()
	bin := testkit.BehaveApp(t)
	port := testkit.FreePort(t)
	cmd := exec.Command(bin, "--version", version)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &app{addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd, exit: make(chan error, 1)}
	go func() { a.exit <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-a.exit
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", a.addr)
		if err == nil {
			c.Close()
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("behaveapp does not listen on %s: %v", a.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the app and waits up to 10 s for it to exit.
func (a *app) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.exit:
		a.exit <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("behaveapp did not exit on %v", sig)
		return nil
	}
}

func TestEveryBehaviourAnswersWhole(t *testing.T) {
	a := startApp(t, "v1")
	run, err := Start(t.Context(), Options{Addr: a.addr, Host: "behave.example"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	res := run.Stop()
	t.Logf("result:\n%s", res)
	for _, b := range All() {
		c := res.PerBehaviour[b]
		if c == nil {
			t.Errorf("%s: no counts", b)
			continue
		}
		if c.Sent == 0 || c.OK == 0 || c.Failed != 0 || c.Closed != 0 || c.Versions["v1"] != c.OK || len(c.Versions) != 1 {
			t.Errorf("%s: sent %d ok %d failed %d closed %d versions %v: want some sent, all OK from v1", b, c.Sent, c.OK, c.Failed, c.Closed, c.Versions)
		}
		if b != WS && c.Dialled != 2*2 {
			t.Errorf("%s: %d connections for 2 workers per method: not kept", b, c.Dialled)
		}
		if c.LastStarted["v1"].IsZero() || c.LastEnded["v1"].IsZero() {
			t.Errorf("%s: no last answer times for v1", b)
		}
		if first := c.FirstStarted["v1"]; first.IsZero() || first.After(c.LastStarted["v1"]) {
			t.Errorf("%s: first answer of v1 at %v, last at %v", b, first, c.LastStarted["v1"])
		}
	}
}

func TestSIGKILLFailsStreams(t *testing.T) {
	a := startApp(t, "v1")
	run, err := Start(t.Context(), Options{Addr: a.addr, Behaviours: []Behaviour{Stream, SSE, Download, Poll, WS}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // streams, events and polls half way
	a.signal(t, syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond) // for the WebSockets' next read
	res := run.Stop()
	t.Logf("result:\n%s", res)
	for _, b := range []Behaviour{Stream, SSE, Download, Poll, WS} {
		if c := res.PerBehaviour[b]; c.Failed == 0 {
			t.Errorf("%s: no failure after SIGKILL", b)
		}
	}
	// Cut in the middle of the body, not only refused afterwards.
	for _, b := range []Behaviour{Stream, SSE} {
		if !hasFailure(res.PerBehaviour[b], ": body: after ") {
			t.Errorf("%s: no body cut among %q", b, res.PerBehaviour[b].Failures)
		}
	}
	if !hasFailure(res.PerBehaviour[Poll], ": head: connection closed") {
		t.Errorf("poll: no answer cut among %q", res.PerBehaviour[Poll].Failures)
	}
	if !hasFailure(res.PerBehaviour[WS], "without a close frame (1006)") {
		t.Errorf("ws: no abrupt close among %q", res.PerBehaviour[WS].Failures)
	}
}

func TestSIGTERMClosesWebSocketsCleanly(t *testing.T) {
	a := startApp(t, "v1")
	run, err := Start(t.Context(), Options{Addr: a.addr, Behaviours: []Behaviour{WS, Stream}, Methods: []string{"GET"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := a.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("behaveapp exited with %v on SIGTERM", err)
	}
	res := run.Stop()
	t.Logf("result:\n%s", res)
	ws := res.PerBehaviour[WS]
	if ws.Closed != 2 || ws.OK < 2*5 {
		t.Errorf("ws: closed %d ok %d, want every socket (2) closed cleanly after messages", ws.Closed, ws.OK)
	}
	// Once the app is gone, new connections are refused: those failures
	// are expected, no others.
	if ws.Failed != ws.FailedBy["dial"] {
		t.Errorf("ws: failures %v, want only refused reconnections", ws.FailedBy)
	}
	// Streams under way finish whole. The server's close after the last
	// one may race with the next request on that connection (head).
	if st := res.PerBehaviour[Stream]; st.OK == 0 || st.Failed != st.FailedBy["dial"]+st.FailedBy["head"] {
		t.Errorf("stream: ok %d, failures %v: want some OK, none cut", st.OK, st.FailedBy)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no address", Options{}},
		{"unknown behaviour", Options{Addr: "127.0.0.1:1", Behaviours: []Behaviour{"nap"}}},
		{"unknown method", Options{Addr: "127.0.0.1:1", Methods: []string{"PUT"}}},
		{"negative workers", Options{Addr: "127.0.0.1:1", WorkersPer: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Start(t.Context(), tc.o); err == nil {
				t.Fatal("Start took the options")
			}
		})
	}
}

func hasFailure(c *Counts, part string) bool {
	for _, f := range c.Failures {
		if strings.Contains(f, part) {
			return true
		}
	}
	return false
}

func TestIdleSeesTheServersEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := dial(t.Context(), ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	srv := <-accepted
	if srv == nil {
		t.Fatal("no connection accepted")
	}
	if !c.idle() {
		t.Fatal("an open connection is not idle")
	}
	srv.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	if c.idle() {
		t.Fatal("a connection with unread bytes is idle")
	}
	c.br.ReadByte()
	srv.Close()
	time.Sleep(50 * time.Millisecond)
	if c.idle() {
		t.Fatal("a connection the server ended is idle")
	}
}
