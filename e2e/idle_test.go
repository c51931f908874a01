package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit"
)

// TestIdleSleep runs an app with idle-stop: 2s behind a proxy and with
// socket-activation: true. Each goes to sleep (its service inactive, its
// cgroup gone, its socket listening, keter_apps{state="sleeping"}), wakes
// on a burst of 50 clients at once with none failing, and survives a
// keter restart while asleep (not woken) and while awake. The app takes
// a second to bind, so the proxy's wait for it is tested too.
func TestIdleSleep(t *testing.T) {
	for _, mode := range []string{"proxy", "socket-activation"} {
		t.Run(mode, func(t *testing.T) {
			statusPort := testkit.FreePort(t)
			k := startKeter(t, fmt.Sprintf("status:\n  listen: 127.0.0.1:%d\n", statusPort))
			metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", statusPort)
			tok := testkit.Token()
			app, host := "idle"+tok, "idle-"+tok+".test"
			yaml := "idle-stop: 2s\n"
			if mode == "socket-activation" {
				yaml += "socket-activation: true\n"
			}
			src := filepath.Join(k.Root, "."+app+".src")
			testkit.BehaveBundle(t, src, host, yaml, "--version", "v1", "--start-delay", "1s")
			k.Drop(src, app+".keter")
			eventually(t, 60*time.Second, func() error {
				if strings.Contains(k.Log(), "deploy failed") {
					t.Fatalf("deploy failed:\n%s", k.Log())
				}
				if code, _, err := k.Get(host, "/"); err != nil || code != 200 {
					return fmt.Errorf("not serving yet: %d %v", code, err)
				}
				return nil
			})
			unit, socket := sleeperUnits(t, app, mode)

			waitAsleep(t, unit, socket)
			if m := httpGet(t, metrics); !strings.Contains(m, `keter_apps{state="sleeping"} 1`) {
				t.Errorf("metrics do not count the app as sleeping:\n%s", grepLines(m, "keter_apps"))
			}
			if inherited := unitProp(t, unit, "Environment"); mode == "socket-activation" && strings.Contains(inherited, "LISTEN_FDS") {
				t.Errorf("LISTEN_FDS set by keter, not systemd: %s", inherited)
			}
			burst(t, k, host, "waking from sleep")
			if mode == "socket-activation" {
				if j := run(t, "journalctl", "--no-pager", "-o", "cat", "KETER_APP="+app); !strings.Contains(j, "socket from systemd: true") {
					t.Errorf("the app did not take systemd's socket:\n%s", j)
				}
			}

			// A keter restart while asleep re-adopts the app and does not wake it.
			waitAsleep(t, unit, socket)
			k.restart()
			eventually(t, 30*time.Second, func() error {
				if !strings.Contains(k.Log(), `re-adopted running version" app=`+app) {
					return fmt.Errorf("keter has not re-adopted %s", app)
				}
				return nil
			})
			if strings.Contains(k.Log(), "not re-adopting app") {
				t.Fatalf("keter did not re-adopt the sleeping app:\n%s", k.Log())
			}
			time.Sleep(3 * time.Second)
			if st := unitProp(t, unit, "ActiveState"); st != "inactive" {
				t.Fatalf("a keter restart woke the sleeping app: %s is %s", unit, st)
			}
			burst(t, k, host, "waking after a keter restart while asleep")

			// A keter restart while awake keeps it running, and it sleeps again.
			busy := driveOne(t, k, host, 2, 200*time.Millisecond)
			time.Sleep(500 * time.Millisecond)
			pid := unitProp(t, unit, "MainPID")
			if pid == "0" {
				t.Fatalf("%s is not running under load", unit)
			}
			k.restart()
			time.Sleep(time.Second)
			if again := unitProp(t, unit, "MainPID"); again != pid {
				t.Errorf("keter restart restarted the awake app: pid %s, then %s", pid, again)
			}
			if res := busy.Stop(); res.PerBehaviour[loadgen.One].Failed != 0 || res.PerBehaviour[loadgen.One].OK == 0 {
				t.Errorf("requests failed across a keter restart while awake: %s", res)
			}
			waitAsleep(t, unit, socket)
			burst(t, k, host, "waking after a keter restart while awake")
		})
	}
}

// sleeperUnits finds app's service and its socket.
func sleeperUnits(t *testing.T, app, mode string) (unit, socket string) {
	t.Helper()
	out := run(t, "systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-"+app+"-*")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case strings.HasSuffix(f[0], "-web0.service"):
			unit = f[0]
		case strings.HasSuffix(f[0], ".socket"):
			socket = f[0]
		}
	}
	if unit == "" || socket == "" {
		t.Fatalf("app %s has no service or no socket:\n%s", app, out)
	}
	if want := strings.TrimSuffix(unit, ".service") + ".socket"; mode == "socket-activation" && socket != want {
		t.Errorf("socket %s, want %s (the app's own)", socket, want)
	}
	return unit, socket
}

// waitAsleep waits until unit is inactive with its cgroup gone (its
// memory freed) while socket listens.
func waitAsleep(t *testing.T, unit, socket string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		if st := unitProp(t, unit, "ActiveState"); st != "inactive" {
			return fmt.Errorf("%s is %s", unit, st)
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/keter.slice", unit)); err == nil {
			return fmt.Errorf("%s stopped but its cgroup is still there", unit)
		}
		if st := unitProp(t, socket, "ActiveState"); st != "active" {
			return fmt.Errorf("socket %s is %s", socket, st)
		}
		return nil
	})
}

// burst sends 50 clients at once at a sleeping app through nginx, with
// the strict client: not one request may fail.
func burst(t *testing.T, k *keter, host, what string) {
	t.Helper()
	run := driveOne(t, k, host, 50, 100*time.Millisecond)
	time.Sleep(2500 * time.Millisecond)
	res := run.Stop()
	c := res.PerBehaviour[loadgen.One]
	t.Logf("%s: %s", what, res)
	if c == nil || c.Failed != 0 || c.OK < 50 || c.Dialled < 50 {
		t.Fatalf("%s: want 50 clients answered and none failed: %+v", what, c)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// driveOne starts workers strict clients on one-write GETs to host.
func driveOne(t *testing.T, k *keter, host string, workers int, pause time.Duration) *loadgen.Run {
	t.Helper()
	run, err := loadgen.Start(context.Background(), loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.Port), Host: host,
		Behaviours: []loadgen.Behaviour{loadgen.One}, Methods: []string{"GET"},
		WorkersPer: workers, Pause: pause,
	})
	if err != nil {
		t.Fatal(err)
	}
	return run
}
