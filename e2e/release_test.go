package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// migrateScript is a release step: it says who and where it runs, then
// fails (exit 3 with a message), hangs, waits while the state folder holds
// "hold", or writes the marker the app and its worker look for.
const migrateScript = `#!/bin/sh
echo "release $1 ($2) as $(id -un) in $(pwd), PORT=${PORT:-none}"
case "$2" in
fail) echo "migration $1 failed: relation users already exists"; exit 3 ;;
hang) exec sleep 600 ;;
hold) while [ -f "$STATE_DIRECTORY/hold" ]; do sleep 0.1; done ;;
esac
echo "$1 PORT=${PORT:-none}" > "$STATE_DIRECTORY/marker-$1"
echo "release $1 done"
`

// workerScript is a background stanza that records, once at its start,
// whether its version's marker was already there.
const workerScript = `#!/bin/sh
if [ -f "$STATE_DIRECTORY/marker-$1" ]; then echo seen; else echo missing; fi > "$STATE_DIRECTORY/worker-$1"
exec sleep 3600
`

// releaseBundle writes version v of an app whose release step runs in
// mode (ok, fail, hang, hold), with extra keys under release:.
func releaseBundle(t *testing.T, dir, name, host, v, mode, extra string) string {
	t.Helper()
	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, v+"-"+mode)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d, name+".keter")
	yaml := fmt.Sprintf(`release:
  exec: ../bin/migrate
  args: [%s, %s]
%sstanzas:
  - type: background
    exec: ../bin/worker
    args: [%s]
  - type: webapp
    exec: ../bin/demoapp
    host: %s
    args: [--message, %s]
`, v, mode, extra, v, host, v)
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(yaml)},
		"bin/demoapp":       {Body: demo, Mode: 0o755},
		"bin/migrate":       {Body: []byte(migrateScript), Mode: 0o755},
		"bin/worker":        {Body: []byte(workerScript), Mode: 0o755},
	})
	return path
}

// releaseUnits lists the app's release units systemd still has loaded,
// with their states.
func releaseUnits(t *testing.T, app string) map[string]string {
	t.Helper()
	out := run(t, "systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-"+app+"-*-release.service")
	units := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			units[f[0]] = f[2]
		}
	}
	return units
}

// TestReleaseStep drives an app's release step through keter: it runs
// before any unit of its version, in the app's sandbox and environment
// without PORT, and the app sees what it wrote; a failing step (exit 3)
// and one past its timeout fail the deploy with the step's last lines in
// `keter deploy` and `keter status` while the old version serves every
// request of a load; the old version serves while a slow step runs; and a
// step left running by a keter killed mid-deploy is stopped when keter
// comes back.
func TestReleaseStep(t *testing.T) {
	k := startKeter(t, "")
	const name = "migr"
	host := "migr-" + testkit.Token() + ".test"
	build := filepath.Join(k.Root, "build")
	// The app's StateDirectory as root sees it (DynamicUser).
	state := "/var/lib/private/keter-app-" + name
	t.Cleanup(func() { os.RemoveAll(state) })
	readState := func(file string) string {
		b, _ := os.ReadFile(filepath.Join(state, file))
		return strings.TrimSpace(string(b))
	}

	// A step that works: it ran before the worker (which saw its marker)
	// and the app reads what it wrote.
	mustCLI(t, 0, "deploy", "-c", k.config(), releaseBundle(t, build, name, host, "v1", "ok", ""))
	mustServe(t, k, host, "v1")
	if got := readState("worker-v1"); got != "seen" {
		t.Fatalf("the v1 worker found the marker %q at its start, want seen: the step must run before any unit", got)
	}
	_, dir, _ := k.Get(host, "/env/STATE_DIRECTORY")
	code, marker, err := k.Get(host, "/read?path="+dir+"/marker-v1")
	if err != nil || code != 200 || marker != "v1 PORT=none" {
		t.Fatalf("the app reads the step's marker as %d %q (%v), want \"v1 PORT=none\"", code, marker, err)
	}
	logs, _ := mustCLI(t, 0, "logs", "-c", k.config(), name, "-o", "cat")
	expect(t, "keter logs", logs, []string{"release v1 (ok) as keter-app-" + name + " in /", "release v1 done"})
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(k.Log(), ",release=") {
			return fmt.Errorf("no release= in the deploy's steps")
		}
		return nil
	})
	if u := releaseUnits(t, name); len(u) != 0 {
		t.Fatalf("release units left after the step: %v", u)
	}
	// keter restart and keter env set replace v1 by its own bundle: its
	// step ran when it was new and does not run again.
	mustCLI(t, 0, "restart", "-c", k.config(), name)
	mustCLI(t, 0, "env", "set", "-c", k.config(), name, "RELEASE_TEST=1")
	mustServe(t, k, host, "v1")
	logs, _ = mustCLI(t, 0, "logs", "-c", k.config(), name, "-o", "cat")
	if n := strings.Count(logs, "release v1 done"); n != 1 {
		t.Fatalf("the step ran %d times across a deploy, a restart and an env change, want once:\n%s", n, logs)
	}

	l := startKeepAliveLoad(k, host, 2, func(b string) bool { return b == "v1" || b == "v4" })

	// A failing step: the deploy fails with its lines; v1 serves on.
	_, errOut := mustCLI(t, 1, "deploy", "-c", k.config(), releaseBundle(t, build, name, host, "v2", "fail", ""))
	expect(t, "keter deploy's stderr", errOut, []string{"release step failed: bin/migrate exited with status 3 after",
		"migration v2 failed: relation users already exists", "keeps serving"})
	overview, _ := mustCLI(t, 0, "status", "-c", k.config())
	expect(t, "keter status", overview, []string{"release step failed: bin/migrate exited with status 3"})
	one, _ := mustCLI(t, 0, "status", "-c", k.config(), name)
	expect(t, "keter status "+name, one, []string{"release step failed", "migration v2 failed: relation users already exists"})
	if a := statusOf(t, k).app(name); a == nil || a.LastResult != "failed" || !strings.Contains(a.LastError, "release step failed") {
		t.Fatalf("status --json after the failed step: %+v", a)
	}
	if got := readState("worker-v2"); got != "" {
		t.Fatalf("the v2 worker started (%q) although its release step failed", got)
	}

	// A step past its timeout is stopped, and fails the deploy.
	began := time.Now()
	_, errOut = mustCLI(t, 1, "deploy", "-c", k.config(), releaseBundle(t, build, name, host, "v3", "hang", "  timeout: 2s\n"))
	expect(t, "keter deploy's stderr", errOut, []string{"release step failed: bin/migrate did not finish within its timeout of 2s (release: timeout) and was stopped",
		"release v3 (hang)"})
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("the timed-out deploy took %s", took)
	}
	if u := releaseUnits(t, name); len(u) != 0 {
		t.Fatalf("release units left after failed steps: %v", u)
	}

	// A slow step: v1 serves while it runs, and nothing of v4 has started.
	if err := os.WriteFile(filepath.Join(state, "hold"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var deployErr string
	wg.Add(1)
	go func() {
		defer wg.Done()
		if out, errOut, code := cli(t, "deploy", "-c", k.config(), releaseBundle(t, build, name, host, "v4", "hold", "")); code != 0 {
			deployErr = fmt.Sprintf("exit %d\n%s%s", code, out, errOut)
		}
	}()
	var step string
	eventually(t, 60*time.Second, func() error {
		for u, st := range releaseUnits(t, name) {
			if st == "activating" {
				step = u
				return nil
			}
		}
		return fmt.Errorf("no release step running")
	})
	time.Sleep(time.Second)
	for _, u := range activeAppUnits(t) {
		if strings.HasPrefix(u, "keter-app-"+name+"-") && u != step && !strings.Contains(u, statusOf(t, k).app(name).Live.Version) {
			t.Errorf("unit %s of the new version runs while its release step does", u)
		}
	}
	mustServe(t, k, host, "v1")
	os.Remove(filepath.Join(state, "hold"))
	wg.Wait()
	if deployErr != "" {
		t.Fatalf("deploying v4 after a slow step: %s", deployErr)
	}
	mustServe(t, k, host, "v4")
	if got := readState("worker-v4"); got != "seen" {
		t.Fatalf("the v4 worker found the marker %q", got)
	}
	l.mustAllSucceed(t, "across a failed, a timed-out and a slow release step")

	// keter killed mid-step: the step belongs to a version that never went
	// live; keter stops it when it is back, and deploys the bundle again.
	if err := os.WriteFile(filepath.Join(state, "hold"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	k.Drop(releaseBundle(t, build, name, host, "v5", "hold", ""), name+".keter")
	var orphan string
	eventually(t, 60*time.Second, func() error {
		for u, st := range releaseUnits(t, name) {
			if st == "activating" {
				orphan = u
				return nil
			}
		}
		return fmt.Errorf("no release step running")
	})
	restarts := unitProp(t, k.Unit, "NRestarts")
	run(t, "systemctl", "kill", "--kill-who=main", "-s", "KILL", k.Unit)
	eventually(t, 60*time.Second, func() error {
		if unitProp(t, k.Unit, "NRestarts") == restarts {
			return fmt.Errorf("keter has not restarted yet")
		}
		if st, ok := releaseUnits(t, name)[orphan]; ok {
			return fmt.Errorf("the orphaned step %s is %s", orphan, st)
		}
		return nil
	})
	if !strings.Contains(k.Log(), `msg="stopping orphaned unit" unit=`+orphan) {
		t.Errorf("keter did not log stopping %s", orphan)
	}
	mustServe(t, k, host, "v4")
	os.Remove(filepath.Join(state, "hold"))
	k.WaitBody(host, "v5", 60*time.Second)
}
