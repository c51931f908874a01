package pgstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keter-systemd/keter/internal/testkit"
)

// The test binary run with PGSTORE_HOLD=DSN holds lock "contended" for
// the lock tests: another process, as another host's keter would be.
func TestMain(m *testing.M) {
	if dsn := os.Getenv("PGSTORE_HOLD"); dsn != "" {
		os.Exit(hold(dsn))
	}
	os.Exit(m.Run())
}

// hold takes the lock, says "locked", and releases it when told
// "unlock" on stdin.
func hold(dsn string) int {
	s, err := New(dsn, Options{LockTTL: 2 * time.Second, LockPoll: 50 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx := context.Background()
	if err := s.Lock(ctx, "contended"); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("locked")
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "unlock" {
		return 1
	}
	if err := s.Unlock(ctx, "contended"); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("unlocked")
	return 0
}

type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startHolder runs the test binary as a lock holder and waits until it
// holds the lock.
func startHolder(t *testing.T, dsn string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PGSTORE_HOLD="+dsn)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &holder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	h.expect(t, "locked")
	return h
}

func (h *holder) expect(t *testing.T, want string) {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if strings.TrimSpace(line) != want {
		t.Fatalf("holder said %q (%v), want %q", line, err, want)
	}
}

// TestLockAcrossProcesses: a lock another process holds stays held past
// its expiry while the holder lives; Lock waits for its Unlock, and
// this process may Unlock from another goroutine than Lock's.
func TestLockAcrossProcesses(t *testing.T) {
	db := testkit.Postgres(t)
	s := open(t, db.DSN)
	h := startHolder(t, db.DSN)

	time.Sleep(3 * s.ttl) // the holder renews: no expiry
	if ok, err := s.TryLock(t.Context(), "contended"); ok || err != nil {
		t.Fatalf("TryLock while another process holds it: %v %v", ok, err)
	}
	if ok, err := s.TryLock(t.Context(), "other"); !ok || err != nil {
		t.Fatalf("TryLock of another name: %v %v", ok, err)
	}
	locked := make(chan time.Time, 1)
	go func() {
		if err := s.Lock(context.Background(), "contended"); err != nil {
			t.Error(err)
		}
		locked <- time.Now()
	}()
	time.Sleep(5 * s.poll)
	select {
	case <-locked:
		t.Fatal("Lock returned while the other process holds the lock")
	default:
	}
	fmt.Fprintln(h.stdin, "unlock")
	h.expect(t, "unlocked")
	unlocked := time.Now()
	at := <-locked
	t.Logf("taken %v after the other process unlocked", at.Sub(unlocked))
	if err := s.Unlock(t.Context(), "contended"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(t.Context(), "contended"); err == nil {
		t.Error("a second Unlock succeeded")
	}
	if ok, err := s.TryLock(t.Context(), "contended"); !ok || err != nil {
		t.Fatalf("TryLock after Unlock: %v %v", ok, err)
	}
}

// TestKilledHolder: the lock of a process killed while holding it is
// free once it expires, and the waiter takes it.
func TestKilledHolder(t *testing.T) {
	db := testkit.Postgres(t)
	s := open(t, db.DSN)
	h := startHolder(t, db.DSN)
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.cmd.Wait()
	killed := time.Now()
	if ok, err := s.TryLock(t.Context(), "contended"); ok || err != nil {
		t.Fatalf("TryLock right after the holder died: %v %v (its lock must last until it expires)", ok, err)
	}
	if err := s.Lock(t.Context(), "contended"); err != nil {
		t.Fatal(err)
	}
	t.Logf("taken %v after the holder was killed (lock TTL %v)", time.Since(killed), s.ttl)
	var owner string
	if err := s.do(t.Context(), func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT owner FROM keter_certmagic_locks WHERE name = 'contended'").Scan(&owner)
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(owner, s.owner) {
		t.Errorf("lock owner %q, want this process (%q)", owner, s.owner)
	}
	if err := s.Unlock(t.Context(), "contended"); err != nil {
		t.Fatal(err)
	}
}

// TestLockHonoursContext: a waiting Lock gives up when its context ends.
func TestLockHonoursContext(t *testing.T) {
	db := testkit.Postgres(t)
	a, b := open(t, db.DSN), open(t, db.DSN)
	if err := a.Lock(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := b.Lock(ctx, "x"); err == nil {
		t.Fatal("Lock of a held lock returned without error")
	}
	if err := a.Unlock(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
}
