package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// instanceUnits lists the active units of app.
func instanceUnits(t *testing.T, app string) []string {
	t.Helper()
	var out []string
	for _, u := range activeAppUnits(t) {
		if strings.HasPrefix(u, "keter-app-"+app+"-") {
			out = append(out, u)
		}
	}
	return out
}

// TestInstances runs a webapp as several instances: each a unit on its
// own port, with KETER_INSTANCE in the journal and its own limits, nginx
// balancing them; replacements that change the number (1 → 3 → 1 → 2)
// lose no request under keep-alive load, in both ways of switching; a
// SIGKILLed instance costs no request and comes back; a keter restart
// restarts none.
func TestInstances(t *testing.T) {
	for _, mode := range []string{"map", "reload"} {
		t.Run(mode, func(t *testing.T) {
			k := startKeterNginx(t, "  switch: "+mode+"\n", "")
			tok := testkit.Token()
			app, host := "inst"+tok, "inst-"+tok+".test"
			src := filepath.Join(k.Root, app+".src")
			deploy := func(n int, msg string) {
				t.Helper()
				before := strings.Count(k.Log(), `msg="version live" app=`+app+" ")
				stanzaBundle(t, src, host, fmt.Sprintf("    instances: %d\n    systemd:\n      memory-max: 256M\n", n), "--message", msg)
				k.Drop(src, app+".keter")
				k.WaitBody(host, msg, 60*time.Second)
				eventually(t, 30*time.Second, func() error {
					if strings.Count(k.Log(), `msg="version live" app=`+app+" ") == before {
						return fmt.Errorf("not live yet")
					}
					return nil
				})
			}
			deploy(3, "v1")
			units := instanceUnits(t, app)
			if len(units) != 3 {
				t.Fatalf("units %v, want 3 instances", units)
			}
			ports := map[string]bool{}
			for i, u := range units {
				if !strings.HasSuffix(u, fmt.Sprintf("-web0.%d.service", i+1)) {
					t.Errorf("unit %s is not instance %d", u, i+1)
				}
				env := unitProp(t, u, "Environment")
				_, p, _ := strings.Cut(env, "PORT=")
				ports[strings.Fields(p)[0]] = true
				if mm := unitProp(t, u, "MemoryMax"); mm != strconv.Itoa(256<<20) {
					t.Errorf("%s MemoryMax=%s, want the stanza's limit on each instance", u, mm)
				}
			}
			if len(ports) != 3 {
				t.Errorf("instances share ports: %v", ports)
			}
			if j := run(t, "journalctl", "--no-pager", "-o", "cat", "KETER_APP="+app, "KETER_INSTANCE=2"); !strings.Contains(j, "demoapp listening") {
				t.Errorf("no journal lines with KETER_INSTANCE=2:\n%s", j)
			}
			pids := map[string]bool{}
			for range 60 {
				if code, body, err := k.Get(host, "/pid"); err == nil && code == 200 {
					pids[body] = true
				}
			}
			if len(pids) != 3 {
				t.Errorf("60 requests reached %d instances, want all 3: %v", len(pids), pids)
			}

			l := startKeepAliveLoad(k, host, 4, func(b string) bool { return strings.HasPrefix(b, "v") })
			for i, n := range []int{1, 3, 1, 2} {
				deploy(n, fmt.Sprintf("v%d", i+2))
				if got := len(instanceUnits(t, app)); got < n {
					t.Fatalf("after deploying %d instances, %d units are active", n, got)
				}
			}
			eventually(t, 60*time.Second, func() error { // the old versions drained
				if u := instanceUnits(t, app); len(u) != 2 {
					return fmt.Errorf("active units %v, want the 2 instances", u)
				}
				return nil
			})

			// One of two killed: nginx retries the other, systemd brings it back.
			victim := instanceUnits(t, app)[0]
			pid, _ := strconv.Atoi(unitProp(t, victim, "MainPID"))
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, func() error {
				if n := unitProp(t, victim, "NRestarts"); n == "0" {
					return fmt.Errorf("%s not restarted yet", victim)
				}
				if unitProp(t, victim, "SubState") != "running" {
					return fmt.Errorf("%s not running yet", victim)
				}
				return nil
			})
			time.Sleep(1500 * time.Millisecond) // past the drain and the failed instance's time out
			l.mustAllSucceed(t, "across replacements 3 → 1 → 3 → 1 → 2 and an instance killed")

			// keter restarts: every instance is re-adopted as it runs.
			inv := map[string]string{}
			for _, u := range instanceUnits(t, app) {
				inv[u] = unitProp(t, u, "InvocationID")
			}
			k.restart()
			k.WaitBody(host, "v5", 30*time.Second)
			for u, id := range inv {
				if now := unitProp(t, u, "InvocationID"); now != id {
					t.Errorf("keter's restart restarted %s", u)
				}
			}
		})
	}
}
