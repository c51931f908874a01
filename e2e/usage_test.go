package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// usageJSON is the usage part of one app in `keter status --json`.
type usageJSON struct {
	Units []struct {
		Name  string `json:"name"`
		Live  bool   `json:"live"`
		Usage *struct {
			Since  time.Time `json:"since"`
			Memory *uint64   `json:"memory_bytes"`
			CPU    *uint64   `json:"cpu_nsec"`
			Tasks  *uint64   `json:"tasks"`
		} `json:"usage"`
	} `json:"units"`
	Usage []struct {
		Stanza string    `json:"stanza"`
		Since  time.Time `json:"since"`
		Memory *uint64   `json:"memory_bytes"`
		CPU    *uint64   `json:"cpu_nsec"`
		Tasks  *uint64   `json:"tasks"`
	} `json:"usage"`
}

func appUsage(t *testing.T, k *keter, name string) usageJSON {
	t.Helper()
	out, _ := mustCLI(t, 0, "status", name, "-c", k.config(), "--json")
	var u usageJSON
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("keter status %s --json: %v\n%s", name, err, out)
	}
	return u
}

// cpuMetric reads keter_app_cpu_seconds_total of app's web0 from /metrics.
func cpuMetric(t *testing.T, base, app string) float64 {
	t.Helper()
	metrics := httpGet(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^keter_app_cpu_seconds_total\{app="` + regexp.QuoteMeta(app) + `",stanza="web0"\} (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("/metrics lacks keter_app_cpu_seconds_total of %s:\n%s", app, metrics)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUsageThroughKeter deploys an app that holds 48 MiB and burns 700 ms
// of CPU through nginx, then reads its usage as an operator does: status
// --json agrees with systemctl show, the text views and /metrics show it,
// and the CPU total never goes down through a crash and a replacement.
func TestUsageThroughKeter(t *testing.T) {
	port := testkit.FreePort(t)
	k := startKeter(t, fmt.Sprintf("status:\n  listen: 127.0.0.1:%d\n", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	name := "use" + testkit.Token()
	host := name + ".test"
	build := func(msg string) string {
		path := filepath.Join(k.Root, msg, name+".keter")
		run(t, "mkdir", "-p", filepath.Dir(path))
		stanzaBundle(t, path, host, "", "--message", msg)
		return path
	}
	mustCLI(t, 0, "deploy", "-c", k.config(), build("v1"))
	for _, path := range []string{"/alloc?mb=48", "/burn?ms=700"} {
		if code, body, err := k.Get(host, path); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %q %v", path, code, body, err)
		}
	}

	// Figures are read from the units' cgroups every 5 s (docs/status.md):
	// wait for a read after the burn.
	var u usageJSON
	eventually(t, 30*time.Second, func() error {
		u = appUsage(t, k, name)
		if len(u.Units) == 1 && u.Units[0].Usage != nil && u.Units[0].Usage.CPU != nil && *u.Units[0].Usage.CPU >= uint64(700*time.Millisecond) &&
			len(u.Usage) == 1 && u.Usage[0].CPU != nil && *u.Usage[0].CPU >= uint64(700*time.Millisecond) {
			return nil
		}
		return fmt.Errorf("status --json does not show the 700 ms burned yet: %+v", u)
	})
	if len(u.Units) != 1 || u.Units[0].Usage == nil || u.Units[0].Usage.Memory == nil || u.Units[0].Usage.CPU == nil {
		t.Fatalf("status --json has no unit usage: %+v", u)
	}
	unit, uu := u.Units[0].Name, u.Units[0].Usage
	mem, _ := strconv.ParseUint(unitProp(t, unit, "MemoryCurrent"), 10, 64)
	if *uu.Memory < 48<<20 || max(*uu.Memory, mem)-min(*uu.Memory, mem) > 4<<20 {
		t.Errorf("unit memory %d: want at least 48 MiB and within 4 MiB of systemctl's MemoryCurrent %d", *uu.Memory, mem)
	}
	if *uu.CPU < uint64(700*time.Millisecond) {
		t.Errorf("unit CPU %d ns after the app burned 700 ms", *uu.CPU)
	}
	if sd, err := strconv.ParseUint(unitProp(t, unit, "CPUUsageNSec"), 10, 64); err == nil && (sd < *uu.CPU || sd-*uu.CPU > uint64(200*time.Millisecond)) {
		t.Errorf("unit CPU %d ns, systemctl's CPUUsageNSec a moment later %d", *uu.CPU, sd)
	}
	if len(u.Usage) != 1 || u.Usage[0].Stanza != "web0" || u.Usage[0].CPU == nil || *u.Usage[0].CPU < uint64(700*time.Millisecond) || u.Usage[0].Memory == nil {
		t.Fatalf("status --json app usage %+v: want web0 with at least 700 ms of CPU", u.Usage)
	}

	text, _ := mustCLI(t, 0, "status", "-c", k.config())
	if !regexp.MustCompile(name + `\s+live\s.*\d+\.\d MiB\s+\d+\.\d\d s\s+\d+\s`).MatchString(text) {
		t.Errorf("status lacks the app's MEMORY, CPU and TASKS:\n%s", text)
	}
	one, _ := mustCLI(t, 0, "status", name, "-c", k.config())
	for _, want := range []string{"this run: memory ", "usage (memory and tasks now", "  web0  memory "} {
		if !strings.Contains(one, want) {
			t.Errorf("status %s lacks %q:\n%s", name, want, one)
		}
	}
	if page := httpGet(t, base+"/"); !strings.Contains(page, `<div class="usage"><code>web0</code>`) {
		t.Errorf("status page lacks the usage:\n%s", page)
	}
	last := cpuMetric(t, base, name)
	if last < 0.7 {
		t.Errorf("keter_app_cpu_seconds_total %g after 700 ms burned", last)
	}
	rising := func(during string) {
		t.Helper()
		now := cpuMetric(t, base, name)
		if now < last {
			t.Fatalf("keter_app_cpu_seconds_total went down %s: %g → %g", during, last, now)
		}
		last = now
	}

	// A crash: systemd restarts the unit with fresh counters.
	pid := unitProp(t, unit, "MainPID")
	run(t, "systemctl", "kill", "-s", "KILL", unit)
	eventually(t, 60*time.Second, func() error {
		rising("through the crash")
		if p := unitProp(t, unit, "MainPID"); p == pid || p == "0" || unitProp(t, unit, "ActiveState") != "active" {
			return fmt.Errorf("not restarted yet (MainPID %s)", p)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		if code, _, err := k.Get(host, "/burn?ms=300"); err != nil || code != 200 {
			return fmt.Errorf("the restarted app: %d %v", code, err)
		}
		return nil
	})
	rising("after the crash")

	// A replacement: the old version drains and its unit vanishes.
	mustCLI(t, 0, "deploy", "-c", k.config(), build("v2"))
	eventually(t, 60*time.Second, func() error {
		rising("through the replacement")
		if units := appUsage(t, k, name).Units; len(units) != 1 || units[0].Name == unit {
			return fmt.Errorf("old unit still there: %+v", units)
		}
		return nil
	})
	rising("after the replacement")
	if last < 1.0 {
		t.Errorf("keter_app_cpu_seconds_total %g, want at least the 1 s the app burned", last)
	}
}
