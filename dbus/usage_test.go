package dbus

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// systemctlShow reads properties as `systemctl show -p` prints them;
// a figure systemd does not count reads as unitgen.Unset.
func systemctlShow(t *testing.T, unit string, props ...string) map[string]uint64 {
	t.Helper()
	out := run(t, "systemctl", "show", unit, "-p", strings.Join(props, ","))
	m := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil { // "[not set]", "[no data]"
			n = unitgen.Unset
		}
		m[k] = n
	}
	return m
}

func near(a, b, slack uint64) bool { return max(a, b)-min(a, b) <= slack }

// TestUsageAgreesWithSystemctl starts a real app that holds a known amount
// of memory and burns a known amount of CPU, and compares what List reads
// with what systemctl show prints for the same unit.
func TestUsageAgreesWithSystemctl(t *testing.T) {
	c := newClient(t)
	u, port := startDemo(t, c)
	waitHTTP(t, port, "/")
	const mb, burn = 64, 1500 * time.Millisecond
	waitHTTP(t, port, fmt.Sprintf("/alloc?mb=%d", mb))
	body := waitHTTP(t, port, fmt.Sprintf("/burn?ms=%d", burn.Milliseconds()))
	procCPU, err := strconv.ParseUint(body, 10, 64)
	if err != nil || procCPU < uint64(burn) {
		t.Fatalf("/burn answered %q (%v): want at least %d ns", body, err, burn)
	}
	time.Sleep(200 * time.Millisecond) // let the app go idle

	got := status(t, c, u.Name).Usage
	sd := systemctlShow(t, u.Name, "MemoryCurrent", "CPUUsageNSec", "TasksCurrent", "IOReadBytes", "IOWriteBytes", "IPIngressBytes", "IPEgressBytes")
	f := got.Figures
	for fig, prop := range usageProps {
		t.Logf("%-14s systemd: %-20s keter: %d", prop, fmt.Sprint(sd[prop]), f[fig])
	}

	if f[unitgen.Memory] < mb<<20 || !near(f[unitgen.Memory], sd["MemoryCurrent"], 2<<20) {
		t.Errorf("memory %d: want at least %d and within 2 MiB of systemd's MemoryCurrent %d", f[unitgen.Memory], mb<<20, sd["MemoryCurrent"])
	}
	switch {
	case f[unitgen.CPU] == unitgen.Unset:
		t.Errorf("no CPU time read")
	case f[unitgen.CPU]+uint64(20*time.Millisecond) < procCPU || f[unitgen.CPU] > procCPU+uint64(time.Second):
		// The kernel's two clocks differ by a tick or so.
		t.Errorf("CPU %d ns: want the app's own %d ns (±20 ms) and at most 1 s more", f[unitgen.CPU], procCPU)
	case sd["CPUUsageNSec"] != unitgen.Unset && !near(f[unitgen.CPU], sd["CPUUsageNSec"], uint64(50*time.Millisecond)):
		t.Errorf("CPU %d ns, systemd's CPUUsageNSec %d", f[unitgen.CPU], sd["CPUUsageNSec"])
	case sd["CPUUsageNSec"] == unitgen.Unset:
		// Hybrid cgroups: systemd counts no CPU; keter reads the cgroup's own counter.
		cg := strings.TrimSpace(run(t, "systemctl", "show", u.Name, "-p", "ControlGroup", "--value"))
		if ns, ok := cgroupCPU(hybridRoot + cg); !ok || !near(f[unitgen.CPU], ns, uint64(50*time.Millisecond)) {
			t.Errorf("CPU %d ns, the unit's cgroup v2 cpu.stat says %d ns (read: %v)", f[unitgen.CPU], ns, ok)
		}
	}
	for _, c := range []struct {
		fig   unitgen.Figure
		prop  string
		slack uint64
	}{{unitgen.Tasks, "TasksCurrent", 0}, {unitgen.IORead, "IOReadBytes", 0}, {unitgen.IOWrite, "IOWriteBytes", 1 << 20},
		{unitgen.IPIn, "IPIngressBytes", 0}, {unitgen.IPOut, "IPEgressBytes", 0}} {
		if (f[c.fig] == unitgen.Unset) != (sd[c.prop] == unitgen.Unset) || !near(f[c.fig], sd[c.prop], c.slack) {
			t.Errorf("%s: keter read %d, systemd says %d", c.prop, f[c.fig], sd[c.prop])
		}
	}
	if f[unitgen.Tasks] == unitgen.Unset || f[unitgen.Tasks] < 1 {
		t.Errorf("tasks %d: the app runs at least one", f[unitgen.Tasks])
	}
	if f[unitgen.IPIn] != unitgen.Unset && f[unitgen.IPIn] == 0 {
		t.Errorf("IP accounting on, yet no bytes received after our requests")
	}

	inv, started, err := c.RunID(t.Context(), u.Name)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(run(t, "systemctl", "show", u.Name, "-p", "InvocationID", "--value")); inv != want || started != got.Started || started == 0 {
		t.Errorf("RunID = %s, %d; want %s and List's Started %d", inv, started, want, got.Started)
	}
}

// TestFinalsAfterCrash kills a running app: systemd restarts it with fresh
// counters and logs the killed run's final figures, which Finals reads.
func TestFinalsAfterCrash(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	port := testkit.FreePort(t)
	since := time.Now()
	u, err := start(t, c, webInput(a, port, nil))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // IP traffic, so the run has something to account
		waitHTTP(t, port, "/")
	}
	before := status(t, c, u.Name).Usage
	inv, _, err := c.RunID(t.Context(), u.Name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemctl", "kill", "-s", "KILL", u.Name).CombinedOutput(); err != nil {
		t.Fatalf("systemctl kill: %v: %s", err, out)
	}
	var after unitgen.Usage
	eventually(t, "a new run", func() (bool, string) {
		after = status(t, c, u.Name).Usage
		_, err := get(port, "/")
		return err == nil && after.Started != before.Started, fmt.Sprint(after.Started, err)
	})
	if after.Started <= before.Started {
		t.Errorf("new run started at %d, before the killed one (%d)", after.Started, before.Started)
	}
	if before.Figures[unitgen.CPU] == unitgen.Unset && before.Figures[unitgen.IPIn] == unitgen.Unset && before.Figures[unitgen.IORead] == unitgen.Unset {
		t.Skip("systemd counts none of CPU, IO and IP here, so it logs no final record")
	}
	var finals []unitgen.Final
	cursor := ""
	eventually(t, "the killed run's final record", func() (bool, string) {
		var fs []unitgen.Final
		fs, cursor, err = c.Finals(t.Context(), u.Name, cursor, since)
		finals = append(finals, fs...)
		for _, f := range finals {
			if f.Invocation == inv {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v %v", finals, err)
	})
	for _, f := range finals {
		if f.Unit != u.Name || f.Invocation != inv {
			t.Errorf("record of another run: %+v", f)
			continue
		}
		for _, fig := range []unitgen.Figure{unitgen.CPU, unitgen.IPIn, unitgen.IPOut} {
			if before.Figures[fig] != unitgen.Unset && f.Figures[fig] != unitgen.Unset && f.Figures[fig] < before.Figures[fig] {
				t.Errorf("final %s %d is less than the %d read while it ran", fig, f.Figures[fig], before.Figures[fig])
			}
		}
		if before.Figures[unitgen.IPIn] != unitgen.Unset && f.Figures[unitgen.IPIn] == unitgen.Unset {
			t.Errorf("record has no IP figures though systemd counted them: %+v", f)
		}
		if f.At.Before(since) {
			t.Errorf("record at %s, before the test began", f.At)
		}
	}
	// Reading on from the cursor finds nothing twice.
	seen := map[time.Time]bool{}
	for _, f := range finals {
		seen[f.At] = true
	}
	more, _, err := c.Finals(t.Context(), u.Name, cursor, since)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		if seen[f.At] {
			t.Errorf("record read twice through the cursor: %+v", f)
		}
	}
}
