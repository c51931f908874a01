package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestCrashMidDeployConverges SIGKILLs keter between each two steps of a
// replacement; systemd restarts it and the next start must converge on one
// live version with no orphaned unit, folder or secret file.
func TestCrashMidDeployConverges(t *testing.T) {
	points := []string{"unpacked", "started", "ready", "switched", "saved", "draining", "stopping"}
	k := startKeter(t, "")
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			host := "crash-" + point + "-" + testkit.Token() + ".test"
			src := filepath.Join(k.Root, "crash.src")
			name := "crash-" + point + ".keter"
			k.deployDemo(name, host, "v1")

			k.restart("KETER_TEST_CRASHPOINT=" + point)
			restarts := unitProp(t, k.Unit, "NRestarts")
			testkit.DemoBundle(t, src, host, "--message", "v2")
			k.Drop(src, name)
			eventually(t, 60*time.Second, func() error {
				if unitProp(t, k.Unit, "NRestarts") == restarts {
					return fmt.Errorf("keter has not crashed at %q yet", point)
				}
				return nil
			})
			k.WaitBody(host, "v2", 90*time.Second)
			eventually(t, 60*time.Second, func() error { return converged(k) })

			// Clean slate for the next point.
			os.Remove(filepath.Join(k.Root, "incoming", name))
			k.waitSettled(0, 60*time.Second)
		})
	}
}

// converged: one live app, one active unit, one folder, one secret file
// at most, and keter itself running.
func converged(k *keter) error {
	if st := unitProp(k.t, k.Unit, "ActiveState"); st != "active" {
		return fmt.Errorf("keter is %s", st)
	}
	if u := activeAppUnits(k.t); len(u) != 1 {
		return fmt.Errorf("active app units %v, want 1", u)
	}
	dirs, _ := os.ReadDir(filepath.Join(k.Root, "temp"))
	if len(dirs) != 1 {
		return fmt.Errorf("temp holds %v, want 1 folder", names(dirs))
	}
	envs, _ := os.ReadDir(filepath.Join(k.Root, "etc", "env"))
	if len(envs) > 1 {
		return fmt.Errorf("env files %v, want at most 1", names(envs))
	}
	// Folders are NAME-VERSION; units keter-app-NAME-VERSION-STANZA.
	live, dir := activeAppUnits(k.t)[0], dirs[0].Name()
	if id := dir[strings.LastIndex(dir, "-")+1:]; !strings.Contains(live, "-"+id+"-") {
		return fmt.Errorf("live unit %s does not belong to folder %s", live, dir)
	}
	return nil
}

// TestCrashDuringFirstSwitchAdopts: keter killed around the nginx switch
// of a first version (before or after nginx took it) must, once
// restarted, adopt that version: no second start, no downtime, not
// stopped as an orphan.
func TestCrashDuringFirstSwitchAdopts(t *testing.T) {
	for _, point := range []string{"saved", "switched"} {
		t.Run(point, func(t *testing.T) {
			k := startKeter(t, "")
			k.restart("KETER_TEST_CRASHPOINT=" + point)
			restarts := unitProp(t, k.Unit, "NRestarts")
			host := "first-" + point + "-" + testkit.Token() + ".test"
			// Not deployDemo: this keter dies before it can log "version live".
			src := filepath.Join(k.Root, "first.src")
			testkit.DemoBundle(t, src, host, "--message", "once")
			k.Drop(src, "first"+point+".keter")
			k.WaitBody(host, "once", 60*time.Second)
			eventually(t, 30*time.Second, func() error {
				if unitProp(t, k.Unit, "NRestarts") == restarts {
					return fmt.Errorf("keter has not crashed at %q yet", point)
				}
				return nil
			})
			// Judge only after the restarted keter has reconciled: keter
			// was ready once at start, once re-armed, once after the crash.
			eventually(t, 30*time.Second, func() error {
				if n := strings.Count(k.Log(), `msg="keter ready"`); n < 3 {
					return fmt.Errorf("keter ready %d times, want 3", n)
				}
				return nil
			})
			k.WaitBody(host, "once", 30*time.Second)
			k.waitSettled(1, 30*time.Second)
			if n := strings.Count(k.Log(), `msg="unit started" app=first`+point); n != 1 {
				t.Fatalf("the app was started %d times, want once (adopted after the crash)", n)
			}
		})
	}
}
