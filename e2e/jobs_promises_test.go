package e2e

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// promisesBundle is a webapp answering version plus four jobs:
// capped (by hand; sleeps 30 s, max-run-time 2s), long (every 2 s, runs
// 5 s, logs its start and end), persist (persistent, every 20 s, logs
// its run) and folder (by hand; after 6 s writes a file into its
// version's folder and logs what it read back).
func promisesBundle(t *testing.T, path, host, version string) {
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
    name: capped
    exec: ../bin/capped.sh
    schedule: yearly
    max-run-time: 2s
  - type: scheduled
    name: long
    exec: ../bin/long.sh
    args: [%[1]s]
    schedule: "*-*-* *:*:0/2"
  - type: scheduled
    name: persist
    exec: ../bin/persist.sh
    args: [%[1]s]
    schedule: "*-*-* *:*:0/20"
    persistent: true
  - type: scheduled
    name: folder
    exec: ../bin/folder.sh
    args: [%[1]s]
    schedule: yearly
`, version, host)
	sh := func(s string) testkit.File { return testkit.File{Body: []byte("#!/bin/sh\nset -e\n" + s), Mode: 0o755} }
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(yaml)},
		"bin/demoapp":       {Body: bin, Mode: 0o755},
		"bin/capped.sh":     sh("echo capped start\nsleep 30\necho capped never\n"),
		"bin/long.sh":       sh("echo \"start $1 $(date +%s.%N)\" >> \"$STATE_DIRECTORY/long.log\"\nsleep 5\necho \"end $1 $(date +%s.%N)\" >> \"$STATE_DIRECTORY/long.log\"\n"),
		"bin/persist.sh":    sh("echo \"$1 $(date +%s.%N)\" >> \"$STATE_DIRECTORY/persist.log\"\n"),
		"bin/folder.sh":     sh("sleep 6\necho \"$1\" > job-wrote\necho \"$1 wrote in $PWD: $(cat job-wrote)\" >> \"$STATE_DIRECTORY/folder.log\"\n"),
	})
}

// runsOf reads "VERSION UNIXTIME" lines.
func runsOf(t *testing.T, path, version string) []float64 {
	t.Helper()
	var out []float64
	for _, l := range strings.Split(readLog(path), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == version {
			s, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("%s: %q", path, l)
			}
			out = append(out, s)
		}
	}
	return out
}

func unixTime(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// TestScheduledJobPromises: max-run-time stops a run and status says
// "timeout"; runs of a job never overlap, across a redeploy neither; a
// persistent job's run missed while its timer was down (as over a
// host's downtime, after which keter deploys a new version) runs as soon
// as the new version's timer starts; a run under way at a redeploy
// writes into its own version's folder, which is deleted only after.
func TestScheduledJobPromises(t *testing.T) {
	name := "promise-" + testkit.Token()
	host := name + ".test"
	stateDir := "/var/lib/private/keter-app-" + name
	// Before startKeter: cleanups run last first, so this one runs once
	// the harness has stopped the app's units, which would make it anew.
	t.Cleanup(func() {
		os.RemoveAll(stateDir)
		stamps, _ := filepath.Glob("/var/lib/systemd/timers/stamp-keter-app-" + name + "-*")
		for _, s := range stamps {
			os.Remove(s)
		}
	})
	k := startKeter(t, "")
	cfg := k.config()
	longLog, persistLog, folderLog := filepath.Join(stateDir, "long.log"), filepath.Join(stateDir, "persist.log"), filepath.Join(stateDir, "folder.log")

	src := filepath.Join(k.Root, "v1", name+".keter")
	os.MkdirAll(filepath.Dir(src), 0o755)
	promisesBundle(t, src, host, "v1")
	mustCLI(t, 0, "deploy", "-c", cfg, src)
	v1 := jobsApp(t, k, name)

	// max-run-time: systemd stops the run; status shows it.
	mustCLI(t, 0, "job", "-c", cfg, "run", name, "capped")
	eventually(t, 20*time.Second, func() error {
		for _, j := range jobsApp(t, k, name).Jobs {
			if j.Name != "capped" {
				continue
			}
			if j.LastResult != "timeout" {
				return fmt.Errorf("capped: %+v", j)
			}
			if j.Duration < 2*time.Second || j.Duration > 10*time.Second {
				t.Errorf("capped ran %s, want about its max-run-time of 2s", j.Duration)
			}
			return nil
		}
		return fmt.Errorf("no job capped in status")
	})
	if out, _ := mustCLI(t, 0, "status", "-c", cfg, name); !strings.Contains(out, "timeout") {
		t.Errorf("keter status %s does not say capped timed out:\n%s", name, out)
	}
	if logs := run2(t, "journalctl", "--no-pager", "-o", "cat", "KETER_APP="+name, "KETER_JOB=capped"); strings.Contains(logs, "capped never") || !strings.Contains(logs, "capped start") {
		t.Errorf("capped's journal:\n%s", logs)
	}

	// persistent: one run under v1, then its timer is stopped (what a
	// host's downtime does), and a tick passes.
	var last float64
	eventually(t, 30*time.Second, func() error {
		if r := runsOf(t, persistLog, "v1"); len(r) > 0 {
			last = r[len(r)-1]
			return nil
		}
		return fmt.Errorf("persist has not run under v1")
	})
	persistTimer := "keter-app-" + name + "-" + v1.Live.Version + "-job-persist.timer"
	run(t, "systemctl", "stop", persistTimer)
	r1 := runsOf(t, persistLog, "v1")
	last = r1[len(r1)-1]
	missed := time.Unix((int64(last)/20+1)*20, 0)
	time.Sleep(time.Until(missed.Add(1500 * time.Millisecond)))
	if n := len(runsOf(t, persistLog, "v1")); n != len(r1) {
		t.Fatalf("persist ran under v1 with its timer stopped")
	}

	// The redeploy: folder is running under v1 meanwhile.
	mustCLI(t, 0, "job", "-c", cfg, "run", name, "folder")
	src2 := filepath.Join(k.Root, "v2", name+".keter")
	os.MkdirAll(filepath.Dir(src2), 0o755)
	promisesBundle(t, src2, host, "v2")
	mustCLI(t, 0, "deploy", "-c", cfg, src2)
	live := time.Now()
	nextTick := time.Unix((live.Unix()/20+1)*20, 0)
	v2 := jobsApp(t, k, name)
	if v2.Live == nil || v2.Live.Version == v1.Live.Version {
		t.Fatalf("no new version live: %+v", v2.Live)
	}

	// The missed run runs at once, not at the next tick.
	eventually(t, 30*time.Second, func() error {
		if len(runsOf(t, persistLog, "v2")) == 0 {
			return fmt.Errorf("persist has not run under v2 (live at %s, next tick %s)", live.Format(time.TimeOnly), nextTick.Format(time.TimeOnly))
		}
		return nil
	})
	if first := unixTime(runsOf(t, persistLog, "v2")[0]); !first.Before(nextTick) {
		t.Errorf("persist's first run under v2 at %s, on its schedule (next tick %s after going live at %s): the run missed at %s did not run at start",
			first.Format(time.StampMilli), nextTick.Format(time.StampMilli), live.Format(time.StampMilli), missed.Format(time.StampMilli))
	}

	// folder ends under v1, in v1's folder, which goes only then.
	eventually(t, 30*time.Second, func() error {
		want := "v1 wrote in " + v1.Live.Dir + ": v1"
		if !strings.Contains(readLog(folderLog), want) {
			return fmt.Errorf("folder.log %q lacks %q", readLog(folderLog), want)
		}
		if _, err := os.Stat(v1.Live.Dir); err == nil {
			return fmt.Errorf("v1's folder %s is still there after its job ended", v1.Live.Dir)
		}
		return nil
	})

	// long: runs under both versions, never two at once.
	eventually(t, 30*time.Second, func() error {
		if !strings.Contains(readLog(longLog), "end v2 ") {
			return fmt.Errorf("long has not ended a run under v2")
		}
		return nil
	})
	var open string
	starts := 0
	for _, l := range strings.Split(strings.TrimSpace(readLog(longLog)), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) != 3:
			t.Fatalf("long.log line %q", l)
		case f[0] == "start" && open != "":
			t.Errorf("long started (%s) while its run under %s was under way:\n%s", l, open, readLog(longLog))
		case f[0] == "start":
			open = f[1]
			starts++
		case f[0] == "end" && open != f[1]:
			t.Errorf("long ended (%s) with no run of %s under way", l, f[1])
		default:
			open = ""
		}
	}
	if starts < 3 {
		t.Errorf("long ran %d times, want at least 3", starts)
	}
	if out, err := exec.Command("systemctl", "is-active", persistTimer).Output(); strings.TrimSpace(string(out)) == "active" {
		t.Errorf("v1's persist timer is still active: %v", err)
	}
	for _, j := range v2.Jobs {
		if j.Name == "persist" && !j.Persistent {
			t.Errorf("status: persist is not persistent: %+v", j)
		}
	}
}
