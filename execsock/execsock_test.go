package execsock

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func serve(t *testing.T, h Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "exec.sock")
	s, err := Listen(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestPassesFilesAndOutcome: the handler gets the request, the caller's
// credentials and the very files the client holds (it reads the client's
// stdin pipe and writes to its stdout and stderr pipes); the outcome comes
// back.
func TestPassesFilesAndOutcome(t *testing.T) {
	var got Request
	var who Caller
	path := serve(t, func(ctx context.Context, req Request, c Caller, f [3]*os.File, started func(string), _ <-chan int) (Outcome, error) {
		got, who = req, c
		started("unit-1")
		in, err := io.ReadAll(f[0])
		if err != nil {
			return Outcome{}, err
		}
		f[1].WriteString("out:" + string(in))
		f[2].WriteString("err")
		return Outcome{Status: 7}, nil
	})
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	inW.WriteString("hi")
	inW.Close()
	var unit string
	out, err := Run(t.Context(), path, Request{App: "shop", Argv: []string{"sh", "-c", "x y"}}, inR, outW, errW, func(u string) { unit = u })
	if err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	stdout, _ := io.ReadAll(outR)
	stderr, _ := io.ReadAll(errR)
	if out.ExitCode() != 7 || unit != "unit-1" || string(stdout) != "out:hi" || string(stderr) != "err" {
		t.Errorf("outcome %+v unit %q stdout %q stderr %q", out, unit, stdout, stderr)
	}
	if got.App != "shop" || strings.Join(got.Argv, "|") != "sh|-c|x y" {
		t.Errorf("request %+v", got)
	}
	if who.UID != uint32(os.Getuid()) || who.PID != int32(os.Getpid()) {
		t.Errorf("caller %+v, want uid %d pid %d", who, os.Getuid(), os.Getpid())
	}
}

// TestStop: a client whose context ends asks for a stop; the handler's
// context ends and its outcome still reaches the client.
func TestStop(t *testing.T) {
	path := serve(t, func(ctx context.Context, _ Request, _ Caller, _ [3]*os.File, started func(string), _ <-chan int) (Outcome, error) {
		started("u")
		<-ctx.Done()
		return Outcome{Stopped: true}, nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	out, err := Run(ctx, path, Request{App: "a", Argv: []string{"sleep"}}, os.Stdin, os.Stdout, os.Stderr, func(string) { cancel() })
	if err != nil || !out.Stopped || out.ExitCode() != 130 {
		t.Fatalf("outcome %+v, %v: want stopped (130)", out, err)
	}
}

// TestSignals: SIGINT and SIGQUIT asked by the client reach the handler;
// any other signal is dropped; the command's own exit status comes back.
func TestSignals(t *testing.T) {
	got := make(chan int, 4)
	path := serve(t, func(ctx context.Context, _ Request, _ Caller, _ [3]*os.File, started func(string), signals <-chan int) (Outcome, error) {
		started("u")
		for sig := range signals {
			got <- sig
			if sig == 2 {
				return Outcome{Status: 7}, nil // trapped Ctrl-C, exited 7
			}
		}
		return Outcome{}, nil
	})
	sigs := make(chan syscall.Signal, 3)
	sigs <- syscall.SIGKILL
	sigs <- syscall.SIGQUIT
	sigs <- syscall.SIGINT
	out, err := RunSignals(t.Context(), path, Request{App: "a", Argv: []string{"x"}}, os.Stdin, os.Stdout, os.Stderr, nil, sigs)
	if err != nil || out.ExitCode() != 7 {
		t.Fatalf("outcome %+v, %v: want exit 7", out, err)
	}
	close(got)
	var seen []int
	for s := range got {
		seen = append(seen, s)
	}
	if len(seen) != 2 || seen[0] != 3 || seen[1] != 2 {
		t.Errorf("handler got signals %v, want [3 2] (SIGKILL dropped)", seen)
	}
}

// TestClientGoneStops: a client that goes away ends the handler's context.
func TestClientGoneStops(t *testing.T) {
	ended := make(chan struct{})
	path := serve(t, func(ctx context.Context, _ Request, _ Caller, _ [3]*os.File, started func(string), _ <-chan int) (Outcome, error) {
		started("u")
		<-ctx.Done()
		close(ended)
		return Outcome{}, nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go Run(ctx, path, Request{App: "a", Argv: []string{"x"}}, os.Stdin, os.Stdout, os.Stderr, func(string) {})
	time.Sleep(100 * time.Millisecond)
	// A second client that sends its request and hangs up at once.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cancel() // the first one asks to stop
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("handler still running after the client went away")
	}
}

// TestErrors: a handler's error reaches the client as it is, and a
// request without the three files is refused before any handler runs.
func TestErrors(t *testing.T) {
	path := serve(t, func(context.Context, Request, Caller, [3]*os.File, func(string), <-chan int) (Outcome, error) {
		return Outcome{}, errors.New(`no app "nope"`)
	})
	if _, err := Run(t.Context(), path, Request{App: "nope", Argv: []string{"x"}}, os.Stdin, os.Stdout, os.Stderr, nil); err == nil || err.Error() != `no app "nope"` {
		t.Errorf("err %v, want the handler's", err)
	}
	if _, err := Run(t.Context(), path, Request{App: "a"}, os.Stdin, os.Stdout, os.Stderr, nil); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Errorf("err %v, want no command", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(`{"app":"a","argv":["x"]}` + "\n"))
	answer, _ := io.ReadAll(c)
	if !strings.Contains(string(answer), "want 3 file descriptors") {
		t.Errorf("request without files: %q", answer)
	}
}

// TestAllowed: root and the deploy group's members, by primary or
// supplementary group; nobody else, and nobody but root without a group.
func TestAllowed(t *testing.T) {
	s := &Server{gid: 1000, inGroup: func(pid int32, gid int) bool { return pid == 42 && gid == 1000 }}
	for _, c := range []struct {
		name   string
		caller Caller
		ok     bool
	}{
		{"root", Caller{UID: 0, GID: 0}, true},
		{"primary group", Caller{UID: 5, GID: 1000}, true},
		{"supplementary group", Caller{UID: 5, GID: 5, PID: 42}, true},
		{"stranger", Caller{UID: 5, GID: 5, PID: 43}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := s.allowed(c.caller); (err == nil) != c.ok {
				t.Errorf("allowed(%+v) = %v, want ok %v", c.caller, err, c.ok)
			}
		})
	}
	rootOnly := &Server{inGroup: func(int32, int) bool { return true }}
	if rootOnly.allowed(Caller{UID: 5, GID: 0}) == nil {
		t.Error("without a deploy group, a user in gid 0 was let in")
	}
}
