package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit"
)

// rollBundle writes app name: behaveapp (version v) with n instances for
// host, a background stanza that only sleeps, and a release step that
// logs each run to the state directory.
func rollBundle(t *testing.T, k *keter, name, host, v string, n int) string {
	t.Helper()
	behave, err := os.ReadFile(testkit.BehaveApp(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(k.Root, "src", name+v, name+".keter")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(fmt.Sprintf(`drain: 8s
release:
  exec: ../bin/release.sh
stanzas:
  - type: webapp
    exec: ../bin/behaveapp
    args: [--version, %s]
    host: %s
    instances: %d
  - type: background
    exec: ../bin/idle.sh
    restart-count: 1
`, v, host, n))},
		"bin/behaveapp":  {Body: behave, Mode: 0o755},
		"bin/idle.sh":    {Body: []byte("#!/bin/sh\nexec sleep 1000000\n"), Mode: 0o755},
		"bin/release.sh": {Body: []byte("#!/bin/sh\necho ran >> \"$STATE_DIRECTORY/release.log\"\n"), Mode: 0o755},
	})
	return path
}

// appUnits lists name's active units with their main PIDs.
func appUnits(t *testing.T, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, u := range activeAppUnits(t) {
		if strings.HasPrefix(u, "keter-app-"+name+"-") {
			out[u] = unitProp(t, u, "MainPID")
		}
	}
	return out
}

// TestRestartOneByOne: keter restart of an app with three instances
// restarts them in place one at a time (same version, every PID new, the
// background unit's too, twice though its restart-count is 1) while a
// strict keep-alive load of every behaviour (split writes and streams
// included) sees no failed request; an app of one instance is replaced
// by a new version, also with no failure.
func TestRestartOneByOne(t *testing.T) {
	for _, app := range []string{"roll3", "roll1"} {
		dir := "/var/lib/private/keter-app-" + app
		os.RemoveAll(dir)
		t.Cleanup(func() { os.RemoveAll(dir) }) // after the harness stopped the units
	}
	// Ports of its own, away from the 20000-31999 slots other tests'
	// keters (other sandboxes on this host) hand out: an instance's port
	// is free for a moment while it restarts in place, and another
	// keter's app taking it would turn this restart into a replacement
	// (see TestRestartInPlace), which is not what is tested here.
	from := 6100 + rand.IntN(6)*300
	k := startKeter(t, fmt.Sprintf("port-manager:\n  reserve: false\n  ranges: [{from: %d, to: %d}]\n", from, from+299))
	cfg := k.config()
	mustCLI(t, 0, "deploy", "-c", cfg, rollBundle(t, k, "roll3", "roll3.test", "v1", 3))
	mustCLI(t, 0, "deploy", "-c", cfg, rollBundle(t, k, "roll1", "roll1.test", "v1", 1))
	for _, host := range []string{"roll3.test", "roll1.test"} {
		z := &zeroApp{t: t, k: k, host: host}
		z.serving("v1")
	}

	three := drive(t, k, "roll3.test", false)
	one, err := loadgen.Start(context.Background(), loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.Port), Host: "roll1.test", WorkersPer: 1,
		Behaviours: []loadgen.Behaviour{loadgen.One, loadgen.Split, loadgen.Stream}, Pause: 30 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer three.Stop()
	defer one.Stop()
	settle()

	before3, before1 := appUnits(t, "roll3"), appUnits(t, "roll1")
	if len(before3) != 4 || len(before1) != 2 {
		t.Fatalf("units before: %v and %v, want 3 instances + 1 background, 1 + 1", before3, before1)
	}
	live3 := statusOf(t, k).app("roll3").Live
	live1 := statusOf(t, k).app("roll1").Live

	out, _ := mustCLI(t, 0, "restart", "-c", cfg, "roll3")
	if !strings.Contains(out, "roll3: version "+live3.Version+" is live") {
		t.Errorf("keter restart roll3 printed %q, want the same version %s live", out, live3.Version)
	}
	mid3 := appUnits(t, "roll3")
	mustCLI(t, 0, "restart", "-c", cfg, "roll1")
	// Again: the background stanza's restart-count: 1 (a start limit of
	// 2 starts, ever) must not refuse a second keter restart.
	mustCLI(t, 0, "restart", "-c", cfg, "roll3")
	settle()
	res3, res1 := three.Stop(), one.Stop()
	checkZero(t, "roll3 (3 instances) across keter restart", res3, 1)
	t.Logf("roll1 (1 instance) across keter restart:\n%s", res1)
	if res1.Failed() != 0 {
		t.Errorf("roll1: %d requests failed", res1.Failed())
	}

	// roll3: the same version and units, each with a new process.
	if got := statusOf(t, k).app("roll3").Live; got.Version != live3.Version {
		t.Errorf("roll3 live version %s after restart, was %s (want restarted in place)", got.Version, live3.Version)
	}
	after3 := appUnits(t, "roll3")
	for u, pid := range before3 {
		if after3[u] == "" || after3[u] == pid || after3[u] == mid3[u] || mid3[u] == pid {
			t.Errorf("%s: PIDs %s, %s after the first restart, %s after the second", u, pid, mid3[u], after3[u])
		}
	}
	// One at a time: no two instances were ever down together, by
	// systemd's clock (left active → active again) and by keter's log.
	type window struct{ from, to int64 }
	var downs []window
	for u := range before3 {
		if !strings.Contains(u, "web0") {
			continue
		}
		from, _ := strconv.ParseInt(unitProp(t, u, "ActiveExitTimestampMonotonic"), 10, 64)
		to, _ := strconv.ParseInt(unitProp(t, u, "ActiveEnterTimestampMonotonic"), 10, 64)
		if from == 0 || to <= from {
			t.Errorf("%s: left active at %d, active again at %d", u, from, to)
		}
		downs = append(downs, window{from, to})
	}
	if len(downs) != 3 {
		t.Fatalf("restart windows of %d instances, want 3", len(downs))
	}
	for i := range downs {
		for j := i + 1; j < len(downs); j++ {
			if downs[i].from < downs[j].to && downs[j].from < downs[i].to {
				t.Errorf("two instances were down at once: %v and %v", downs[i], downs[j])
			}
		}
	}
	re := regexp.MustCompile(`msg="instance (out of rotation; restarting it|back in rotation)".*unit=(\S+)`)
	var out3 []string
	for _, m := range re.FindAllStringSubmatch(k.Log(), -1) {
		if strings.Contains(m[2], "roll3") {
			out3 = append(out3, m[1][:3]+" "+m[2])
		}
	}
	if len(out3) != 12 {
		t.Errorf("keter logged %d rotation changes for roll3, want 12 (two restarts of 3): %v", len(out3), out3)
	}
	for i := 0; i+1 < len(out3); i += 2 {
		u := strings.TrimPrefix(out3[i], "out ")
		if !strings.HasPrefix(out3[i], "out ") || out3[i+1] != "bac "+u {
			t.Errorf("rotation changes not one instance at a time: %v", out3)
			break
		}
	}

	// The release step ran once per app, at its deploy: no restart reran it.
	for _, app := range []string{"roll3", "roll1"} {
		if got := readLog("/var/lib/private/keter-app-" + app + "/release.log"); got != "ran\n" {
			t.Errorf("%s's release step ran %q, want once (at the deploy)", app, got)
		}
	}

	// roll1: one instance, so a new version (never no instance ready).
	if got := statusOf(t, k).app("roll1").Live; got.Version == live1.Version || got.Digest != live1.Digest {
		t.Errorf("roll1 live %+v after restart, was %+v (want a new version of the same bundle)", got, live1)
	}
	eventually(t, 60*time.Second, func() error {
		after1 := appUnits(t, "roll1")
		for u := range before1 {
			if _, ok := after1[u]; ok {
				return fmt.Errorf("roll1: unit %s of the old version still runs", u)
			}
		}
		if len(after1) != 2 {
			return fmt.Errorf("roll1 units %v, want 2", after1)
		}
		return nil
	})
}
