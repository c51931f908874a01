package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/status"
)

// jobsBundle is a webapp answering version plus three jobs: tick (every
// 2 s, appends a line to the app's state directory), broken (every 2 s,
// exits 3) and slow (yearly, so only by hand; runs 10 s).
func jobsBundle(t *testing.T, path, host, version string) {
	t.Helper()
	bin, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`stanzas:
  - type: webapp
    exec: ../bin/demoapp
    args: ["--message", %[1]q]
    hosts: [%[2]s]
  - type: scheduled
    name: tick
    exec: ../bin/tick.sh
    args: [%[1]s]
    schedule: "*-*-* *:*:0/2"
  - type: scheduled
    name: broken
    exec: ../bin/broken.sh
    schedule: "*-*-* *:*:0/2"
  - type: scheduled
    name: slow
    exec: ../bin/slow.sh
    args: [%[1]s]
    schedule: yearly
    max-run-time: 60s
`, version, host)
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(yaml)},
		"bin/demoapp":       {Body: bin, Mode: 0o755},
		"bin/tick.sh":       {Body: []byte("#!/bin/sh\necho \"$KETER_JOB $1 $(date +%s.%N)\" >> \"$STATE_DIRECTORY/tick.log\"\n"), Mode: 0o755},
		"bin/broken.sh":     {Body: []byte("#!/bin/sh\necho 'broken job: failing on purpose' >&2\nexit 3\n"), Mode: 0o755},
		"bin/slow.sh":       {Body: []byte("#!/bin/sh\necho \"start $1\" >> \"$STATE_DIRECTORY/slow.log\"\nsleep 10\necho \"end $1\" >> \"$STATE_DIRECTORY/slow.log\"\n"), Mode: 0o755},
	})
}

func jobsApp(t *testing.T, k *keter, name string) status.App {
	t.Helper()
	out, _ := mustCLI(t, 0, "status", "--json", "-c", k.config(), name)
	var a status.App
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return a
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func TestScheduledJobs(t *testing.T) {
	name := "jobs-" + testkit.Token()
	host := name + ".test"
	stateDir := "/var/lib/private/keter-app-" + name
	t.Cleanup(func() { os.RemoveAll(stateDir) }) // after the harness stopped the units
	k := startKeter(t, "")
	tickLog, slowLog := filepath.Join(stateDir, "tick.log"), filepath.Join(stateDir, "slow.log")

	src := filepath.Join(k.Root, ".v1.src")
	jobsBundle(t, src, host, "v1")
	k.Drop(src, name+".keter")
	k.WaitBody(host, "v1", 60*time.Second)

	// Both 2-second jobs run and record their results.
	var v1 status.App
	eventually(t, 20*time.Second, func() error {
		if n := strings.Count(readLog(tickLog), "tick v1 "); n < 2 {
			return fmt.Errorf("tick ran %d times under v1", n)
		}
		v1 = jobsApp(t, k, name)
		got := map[string]string{}
		for _, j := range v1.Jobs {
			got[j.Name] = fmt.Sprintf("%s/%d", j.LastResult, j.ExitStatus)
			if j.Name != "slow" && j.Next.IsZero() {
				return fmt.Errorf("job %s has no next run: %+v", j.Name, j)
			}
		}
		if got["tick"] != "success/0" || got["broken"] != "exit-code/3" || got["slow"] != "/0" {
			return fmt.Errorf("job results %v", got)
		}
		return nil
	})
	if v1.Live == nil {
		t.Fatal("no live version")
	}
	out, _ := mustCLI(t, 0, "status", "-c", k.config(), name)
	for _, want := range []string{"jobs:", "tick  *-*-* *:*:0/2", "exit-code (exit 3)", "success (exit 0)"} {
		if !strings.Contains(out, want) {
			t.Errorf("keter status %s lacks %q:\n%s", name, want, out)
		}
	}
	tickTimer := "keter-app-" + name + "-" + v1.Live.Version + "-job-tick.timer"
	if got := unitProp(t, tickTimer, "ActiveState"); got != "active" {
		t.Fatalf("%s is %s", tickTimer, got)
	}
	logs, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "KETER_APP="+name, "KETER_JOB=broken").CombinedOutput()
	if !strings.Contains(string(logs), "broken job: failing on purpose") {
		t.Errorf("journal with KETER_JOB=broken lacks the job's line:\n%s", logs)
	}

	// keter job run starts one now; a second while it runs is refused.
	out, _ = mustCLI(t, 0, "job", "-c", k.config(), "run", name, "slow")
	if !strings.Contains(out, "job slow started") {
		t.Errorf("keter job run said %q", out)
	}
	_, errOut := mustCLI(t, 1, "job", "-c", k.config(), "run", name, "slow")
	if !strings.Contains(errOut, "running already") {
		t.Errorf("second keter job run said %q", errOut)
	}
	_, errOut = mustCLI(t, 1, "job", "-c", k.config(), "run", name, "nope")
	if !strings.Contains(errOut, "no job") {
		t.Errorf("keter job run of an unknown job said %q", errOut)
	}
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(readLog(slowLog), "start v1") {
			return fmt.Errorf("slow.log: %q", readLog(slowLog))
		}
		return nil
	})

	// A keter restart keeps the timer (the same one, never restarted).
	since := unitProp(t, tickTimer, "ActiveEnterTimestampMonotonic")
	k.restart()
	if got := unitProp(t, tickTimer, "ActiveEnterTimestampMonotonic"); got != since {
		t.Errorf("the timer was started again across a keter restart: %s, was %s", got, since)
	}
	before := strings.Count(readLog(tickLog), "tick v1 ")
	eventually(t, 10*time.Second, func() error {
		if n := strings.Count(readLog(tickLog), "tick v1 "); n < before+2 {
			return fmt.Errorf("tick ran %d times after the restart", n-before)
		}
		return nil
	})

	// A replacement while slow runs: the new version's timers fire, the
	// old ones are gone, slow ends under v1 and v1's folder goes after.
	slowService := "keter-app-" + name + "-" + v1.Live.Version + "-job-slow.service"
	eventually(t, 20*time.Second, func() error {
		if !strings.Contains(readLog(slowLog), "end v1") {
			return fmt.Errorf("slow.log: %q", readLog(slowLog))
		}
		// Its last line is written just before its process ends.
		if st := unitProp(t, slowService, "ActiveState"); st == "active" || st == "deactivating" {
			return fmt.Errorf("%s is %s", slowService, st)
		}
		return nil
	})
	mustCLI(t, 0, "job", "-c", k.config(), "run", name, "slow")
	runStart := time.Now()
	src2 := filepath.Join(k.Root, ".v2.src")
	jobsBundle(t, src2, host, "v2")
	k.Drop(src2, name+".keter")
	k.WaitBody(host, "v2", 60*time.Second)
	eventually(t, 10*time.Second, func() error {
		if n := strings.Count(readLog(tickLog), "tick v2 "); n < 2 {
			return fmt.Errorf("tick ran %d times under v2", n)
		}
		return nil
	})
	if st := unitProp(t, tickTimer, "ActiveState"); st != "inactive" {
		t.Errorf("v1's timer is %s after the replacement", st)
	}
	v1Ticks := strings.Count(readLog(tickLog), "tick v1 ")
	time.Sleep(3 * time.Second)
	if n := strings.Count(readLog(tickLog), "tick v1 "); n != v1Ticks {
		t.Errorf("tick ran under v1 after the replacement (%d more times)", n-v1Ticks)
	}
	if time.Since(runStart) < 9*time.Second {
		if n := strings.Count(readLog(slowLog), "end v1"); n != 1 {
			t.Errorf("slow.log has %d ends, want 1 (the second run goes on): %q", n, readLog(slowLog))
		}
		if _, err := os.Stat(v1.Live.Dir); err != nil {
			t.Errorf("v1's folder is gone while its job still runs: %v", err)
		}
	} else {
		t.Logf("the machine is slow: %s since slow started; not checking its folder mid-run", time.Since(runStart))
	}
	eventually(t, 30*time.Second, func() error {
		if strings.Count(readLog(slowLog), "end v1") < 2 {
			return fmt.Errorf("slow.log: %q", readLog(slowLog))
		}
		if _, err := os.Stat(v1.Live.Dir); err == nil {
			return fmt.Errorf("v1's folder %s is still there after its job ended", v1.Live.Dir)
		}
		return nil
	})
	v2 := jobsApp(t, k, name)
	for _, j := range v2.Jobs {
		if !strings.Contains(j.Timer, "-"+v2.Live.Version+"-job-") {
			t.Errorf("job %s runs from %s, not v2 %s", j.Name, j.Timer, v2.Live.Version)
		}
	}
}
