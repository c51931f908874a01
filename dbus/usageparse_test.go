package dbus

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

func TestParseFinal(t *testing.T) {
	// A record as journalctl -o json printed it in the sandbox.
	const line = `{"UNIT":"keter-app-a-1-web0.service","INVOCATION_ID":"17d470d2475d49e28423fca338dfde9e",` +
		`"__REALTIME_TIMESTAMP":"1796181551404174","IP_METRIC_INGRESS_BYTES":"3069","IP_METRIC_EGRESS_BYTES":"1300",` +
		`"CPU_USAGE_NSEC":"2000000","__CURSOR":"s=1"}`
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatal(err)
	}
	f, ok := parseFinal(rec)
	want := unitgen.NoFigures()
	want[unitgen.IPIn], want[unitgen.IPOut], want[unitgen.CPU] = 3069, 1300, 2000000
	if !ok || f.Unit != "keter-app-a-1-web0.service" || f.Invocation != "17d470d2475d49e28423fca338dfde9e" ||
		!f.At.Equal(time.UnixMicro(1796181551404174)) || f.Figures != want {
		t.Errorf("parseFinal = %+v, %v", f, ok)
	}
	delete(rec, "INVOCATION_ID")
	if _, ok := parseFinal(rec); ok {
		t.Errorf("a record without INVOCATION_ID cannot be matched to a run")
	}
}

func TestUsageOfFallsBackToCgroupCPU(t *testing.T) {
	root := t.TempDir()
	old := hybridRoot
	hybridRoot = root
	t.Cleanup(func() { hybridRoot = old })
	cg := "/keter.slice/keter-app-a-1-web0.service"
	if err := os.MkdirAll(filepath.Join(root, cg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, cg, "cpu.stat"), []byte("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		props map[string]any
		cpu   uint64
	}{
		{"systemd counts CPU", map[string]any{"CPUUsageNSec": uint64(7), "ControlGroup": cg}, 7},
		{"hybrid: the cgroup's cpu.stat", map[string]any{"CPUUsageNSec": unitgen.Unset, "ControlGroup": cg}, 1_500_000},
		{"no cgroup (not running)", map[string]any{"CPUUsageNSec": unitgen.Unset, "ControlGroup": ""}, unitgen.Unset},
		{"cgroup gone", map[string]any{"CPUUsageNSec": unitgen.Unset, "ControlGroup": "/gone.service"}, unitgen.Unset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.props["MemoryCurrent"] = uint64(42)
			tt.props["ExecMainStartTimestamp"] = uint64(99)
			u := usageOf(tt.props)
			if u.Figures[unitgen.CPU] != tt.cpu || u.Figures[unitgen.Memory] != 42 || u.Started != 99 || u.Figures[unitgen.IORead] != unitgen.Unset {
				t.Errorf("usageOf = %+v, want CPU %d", u, tt.cpu)
			}
		})
	}
}
