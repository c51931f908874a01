package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// crashingApp deploys a demo app that fails at start, after delay, while
// the file "down" is in its folder; it returns its unit and a function
// that puts the file there (true) or takes it away (false).
func crashingApp(t *testing.T, k *keter, name, delay string) (unit string, down func(bool)) {
	t.Helper()
	host := name + ".test"
	src := filepath.Join(k.Root, name+".src")
	stanzaBundle(t, src, host, "", "--message", "up", "--down-file", "down", "--down-delay", delay)
	k.Drop(src, name+".keter")
	k.WaitBody(host, "up", 60*time.Second)
	units := instanceUnits(t, name)
	if len(units) != 1 {
		t.Fatalf("units %v, want one", units)
	}
	dirs, _ := filepath.Glob(filepath.Join(k.Root, "temp", name+"-*"))
	if len(dirs) != 1 {
		t.Fatalf("version folders %v, want one", dirs)
	}
	marker := filepath.Join(dirs[0], "down")
	return units[0], func(on bool) {
		if !on {
			os.Remove(marker)
			return
		}
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func kill(t *testing.T, unit string) {
	t.Helper()
	pid, _ := strconv.Atoi(unitProp(t, unit, "MainPID"))
	if pid == 0 {
		t.Fatalf("%s has no main process", unit)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// TestShortOutageIsRiddenOut: an app whose database is down for 5-30 s exits
// at start again and again (about every 0.15 s); once the database is
// back it serves, the same unit, never failed.
func TestShortOutageIsRiddenOut(t *testing.T) {
	k := startKeter(t, "")
	name := "outage-" + testkit.Token()
	unit, down := crashingApp(t, k, name, "50ms")
	down(true)
	kill(t, unit)
	// At least 5 s and 10 failed starts: on a loaded machine a start takes
	// longer, so the outage lasts until both are true (well under the
	// minute after which keter gives up).
	began := time.Now()
	restarts := 0
	for time.Since(began) < 5*time.Second || restarts < 10 {
		if time.Since(began) > 30*time.Second {
			t.Fatalf("%d restarts in 30 s: the app did not keep failing at start, the test proves little", restarts)
		}
		time.Sleep(200 * time.Millisecond)
		restarts, _ = strconv.Atoi(unitProp(t, unit, "NRestarts"))
	}
	outage := time.Since(began).Round(100 * time.Millisecond)
	down(false)
	k.WaitBody(name+".test", "up", 30*time.Second)
	if st := unitProp(t, unit, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after the outage, want active", unit, st)
	}
	t.Logf("%d restarts during the %s outage, serving again after it", restarts, outage)
	if strings.Contains(k.Log(), "kept crashing") {
		t.Fatal("keter gave up on a 5 s outage")
	}
}

// TestLongCrashLoopEndsFailed: an app that keeps failing at start, slowly
// enough (every 1.5 s) that systemd's own limit of 100 starts a minute
// never ends it, is given up after a minute: keter stops it and says so.
func TestLongCrashLoopEndsFailed(t *testing.T) {
	k := startKeter(t, "")
	name := "loop-" + testkit.Token()
	unit, down := crashingApp(t, k, name, "1400ms")
	down(true)
	kill(t, unit)
	started := time.Now()
	eventually(t, 120*time.Second, func() error {
		if st := unitProp(t, unit, "ActiveState"); st != "inactive" && st != "failed" {
			return fmt.Errorf("%s is still %s after %s", unit, st, time.Since(started).Round(time.Second))
		}
		return nil
	})
	took := time.Since(started)
	if took < 55*time.Second {
		t.Fatalf("given up after %s, before a minute of crashing", took.Round(time.Second))
	}
	s := statusOf(t, k).app(name)
	if s == nil || !strings.Contains(s.LastError, "kept crashing") {
		t.Fatalf("status does not say why: %+v", s)
	}
	t.Logf("given up after %s: %s", took.Round(time.Second), s.LastError)
}
