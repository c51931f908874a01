package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/cgroup"
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
			t.Cleanup(func() { dumpUnits(t, app) })
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

			// A new bundle for a sleeping app deploys as usual and sleeps again.
			waitAsleep(t, unit, socket)
			before := strings.Count(k.Log(), `msg="version live" app=`+app+" ")
			testkit.BehaveBundle(t, src, host, yaml, "--version", "v2", "--start-delay", "1s")
			k.Drop(src, app+".keter")
			eventually(t, 60*time.Second, func() error {
				if strings.Count(k.Log(), `msg="version live" app=`+app+" ") == before {
					return fmt.Errorf("v2 not live yet")
				}
				return nil
			})
			eventually(t, 30*time.Second, func() error {
				if st := unitProp(t, socket, "ActiveState"); st != "inactive" {
					return fmt.Errorf("the old version's socket %s is %s", socket, st)
				}
				return nil
			})
			unit2, socket2 := sleeperUnits(t, app, mode)
			if unit2 == unit {
				t.Fatalf("still the old unit %s", unit)
			}
			waitAsleep(t, unit2, socket2)
			res := burstRes(t, k, host, "waking the new version")
			if v := res.PerBehaviour[loadgen.One].Versions; v["v1"] != 0 || v["v2"] == 0 {
				t.Errorf("versions answered: %v, want only v2", v)
			}

			// The switch contract holds for an awake sleeper under load.
			busy = driveOne(t, k, host, 4, 50*time.Millisecond)
			before = strings.Count(k.Log(), `msg="version live" app=`+app+" ")
			testkit.BehaveBundle(t, src, host, yaml, "--version", "v3", "--start-delay", "1s")
			k.Drop(src, app+".keter")
			eventually(t, 60*time.Second, func() error {
				if strings.Count(k.Log(), `msg="version live" app=`+app+" ") == before {
					return fmt.Errorf("v3 not live yet")
				}
				return nil
			})
			time.Sleep(1500 * time.Millisecond)
			res = busy.Stop()
			t.Logf("deploying v3 under load: %s", res)
			if c := res.PerBehaviour[loadgen.One]; c.Failed != 0 || c.Versions["v3"] == 0 {
				t.Errorf("deploying v3 under load: want 0 failed and answers from v3: %+v", c)
			}
		})
	}
}

// sleeperUnits finds app's listening socket and the service it wakes.
func sleeperUnits(t *testing.T, app, mode string) (unit, socket string) {
	t.Helper()
	out := run(t, "systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-"+app+"-*.socket")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "active" {
			socket = f[0]
		}
	}
	head, _, ok := strings.Cut(socket, "-web0")
	if !ok {
		t.Fatalf("app %s has no listening socket:\n%s", app, out)
	}
	unit = head + "-web0.service"
	want := unit[:len(unit)-len(".service")] + `\x2dproxy.socket`
	if mode == "socket-activation" {
		want = unit[:len(unit)-len(".service")] + ".socket"
	}
	if socket != want {
		t.Errorf("socket %s, want %s", socket, want)
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
		if cg := unitProp(t, unit, "ControlGroup"); cg != "" {
			return fmt.Errorf("%s stopped but still has its cgroup %s", unit, cg)
		}
		if _, err := os.Stat(filepath.Join(cgroupMount(t), "keter.slice", unit)); err == nil {
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
func burst(t *testing.T, k *keter, host, what string) { t.Helper(); burstRes(t, k, host, what) }

// burstRes is burst, returning what the clients saw.
func burstRes(t *testing.T, k *keter, host, what string) loadgen.Result {
	t.Helper()
	run := driveOne(t, k, host, 50, 100*time.Millisecond)
	time.Sleep(2500 * time.Millisecond)
	res := run.Stop()
	c := res.PerBehaviour[loadgen.One]
	t.Logf("%s: %s", what, res)
	if c == nil || c.Failed != 0 || c.OK < 50 || c.Dialled < 50 {
		t.Fatalf("%s: want 50 clients answered and none failed: %+v", what, c)
	}
	return res
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

// TestIdleInstancesAndMaintenance: a sleeping app with two instances
// wakes whole under a burst (each instance has its own socket), and
// maintenance on and off works on a sleeping app without waking it.
func TestIdleInstancesAndMaintenance(t *testing.T) {
	k := startKeter(t, "")
	tok := testkit.Token()
	app, host := "idlei"+tok, "idlei-"+tok+".test"
	t.Cleanup(func() { dumpUnits(t, app) })
	src := filepath.Join(k.Root, "."+app+".src")
	testkit.BehaveBundle(t, src, host, "idle-stop: 2s\ninstances: 2\n", "--version", "v1")
	k.Drop(src, app+".keter")
	eventually(t, 60*time.Second, func() error {
		if code, _, err := k.Get(host, "/"); err != nil || code != 200 {
			return fmt.Errorf("not serving yet: %d %v", code, err)
		}
		return nil
	})
	var units, sockets []string
	out := run(t, "systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-"+app+"-*")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case strings.Contains(f[0], "-web0.") && strings.HasSuffix(f[0], ".service") && !strings.Contains(f[0], "proxy"):
			units = append(units, f[0])
		case strings.HasSuffix(f[0], ".socket"):
			sockets = append(sockets, f[0])
		}
	}
	if len(units) != 2 || len(sockets) != 2 {
		t.Fatalf("want 2 app units and 2 sockets:\n%s", out)
	}
	for i := range units {
		waitAsleep(t, units[i], sockets[i])
	}

	mustCLI(t, 0, "maintenance", "on", app, "-c", k.config())
	if code, _, err := k.Get(host, "/"); err != nil || code != 503 {
		t.Errorf("in maintenance: %d %v, want 503", code, err)
	}
	for i := range units {
		if st := unitProp(t, units[i], "ActiveState"); st != "inactive" {
			t.Errorf("maintenance woke %s: %s", units[i], st)
		}
	}
	mustCLI(t, 0, "maintenance", "off", app, "-c", k.config())

	l := driveOne(t, k, host, 50, 100*time.Millisecond)
	eventually(t, 20*time.Second, func() error {
		for _, u := range units {
			if st := unitProp(t, u, "ActiveState"); st != "active" {
				return fmt.Errorf("%s is %s under load", u, st)
			}
		}
		return nil
	})
	res := l.Stop()
	t.Logf("burst: %s", res)
	if c := res.PerBehaviour[loadgen.One]; c.Failed != 0 || c.OK < 50 {
		t.Fatalf("want none failed: %+v", c)
	}
	for i := range units {
		waitAsleep(t, units[i], sockets[i])
	}
}

// dumpUnits logs what systemd and the app said, when t failed.
func dumpUnits(t *testing.T, app string) {
	if !t.Failed() {
		return
	}
	out, _ := exec.Command("journalctl", "--no-pager", "-o", "short-precise", "-n", "300", "-u", "keter-app-"+app+"-*").CombinedOutput()
	t.Logf("journal of %s's units:\n%s", app, out)
	out, _ = exec.Command("systemctl", "list-units", "--all", "--no-pager", "keter-app-"+app+"-*").CombinedOutput()
	t.Logf("units:\n%s", out)
}

// cgroupMount is where the cgroup2 file system is (under
// /sys/fs/cgroup/unified on a hybrid host).
func cgroupMount(t *testing.T) string {
	t.Helper()
	m, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m, "keter.slice")); err != nil {
		t.Fatalf("no keter.slice under the cgroup2 mount %s: %v", m, err)
	}
	return m
}
