package fleet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLockHeldByAnotherProcess takes the lock in a child process (flock
// is per process here as on a host), checks this one is refused with the
// holder, then kills the child and takes it.
func TestLockHeldByAnotherProcess(t *testing.T) {
	if os.Getenv("FLEET_LOCK_CHILD") != "" {
		l, _, err := tryLock(os.Getenv("FLEET_LOCK_CHILD"), "web", Holder{User: "alice", Machine: "laptop", PID: 42, Since: time.Now()})
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute)
		l.release()
		return
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestLockHeldByAnotherProcess$")
	child.Env = append(os.Environ(), "FLEET_LOCK_CHILD="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	_, holder, err := tryLock(dir, "web", Holder{User: "bob"})
	if !errors.Is(err, ErrBusy) || holder == nil || holder.User != "alice" || holder.PID != 42 {
		t.Fatalf("tryLock while held: %v %+v, want ErrBusy with alice's holder", err, holder)
	}
	if s := holder.String(); !strings.HasPrefix(s, "alice@laptop (pid 42) since ") {
		t.Errorf("holder reads %q", s)
	}
	// Another app's lock is free.
	other, _, err := tryLock(dir, "api", Holder{User: "bob"})
	if err != nil {
		t.Fatalf("another app's lock: %v", err)
	}
	other.release()
	child.Process.Kill() // however the holder ends, the lock ends with it
	child.Wait()
	l, _, err := tryLock(dir, "web", Holder{User: "bob"})
	if err != nil {
		t.Fatalf("tryLock after the holder died: %v", err)
	}
	if h := readHolder(filepath.Join(dir, "web.holder")); h == nil || h.User != "bob" {
		t.Errorf("holder file says %+v, want bob", h)
	}
	l.release()
}
