package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/config"
)

func TestMergeRanges(t *testing.T) {
	cases := []struct {
		name, cur string
		add       []config.PortRange
		want      string
	}{
		{"empty", "", []config.PortRange{{From: 43124, To: 44320}}, "43124-44320"},
		{"keeps others", "8080,9000-9005", []config.PortRange{{From: 43124, To: 44320}}, "8080,9000-9005,43124-44320"},
		{"overlaps coalesce", "", []config.PortRange{{From: 28120, To: 29166}, {From: 28241, To: 29117}, {From: 29167, To: 29170}}, "28120-29170"},
		{"already there", "43124-44320", []config.PortRange{{From: 43124, To: 44320}}, "43124-44320"},
		{"single port stays single", "22", nil, "22"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := mergeRanges(c.cur, c.add)
			if err != nil || got != c.want {
				t.Fatalf("mergeRanges(%q) = %q, %v; want %q", c.cur, got, err, c.want)
			}
		})
	}
	if _, err := mergeRanges("12-x", nil); err == nil {
		t.Fatal("a malformed kernel list was accepted")
	}
}

func TestReservePortsWritesUnion(t *testing.T) {
	dir := t.TempDir()
	path, record := filepath.Join(dir, "ip_local_reserved_ports"), filepath.Join(dir, "reserved-ports")
	// Someone reserved 8080 and part of keter's first range before keter.
	os.WriteFile(path, []byte("8080,43124-43200\n"), 0o644)
	if _, err := reservePorts(path, record, config.DefaultPortRanges); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want, _ := mergeRanges("8080", config.DefaultPortRanges)
	if string(got) != want+"\n" || want == "8080" {
		t.Fatalf("file holds %q, want %q", got, want)
	}
	rec, _ := os.ReadFile(record)
	if !strings.HasPrefix(string(rec), "28120-29166,29170-29998,") || strings.Contains(string(rec), "8080") || strings.Contains(string(rec), "43124") || !strings.Contains(string(rec), ",43201-44320,") {
		t.Fatalf("record %q: want keter's ranges less what was reserved before", rec)
	}
	// A second start adds nothing and keeps the record.
	if _, err := reservePorts(path, record, config.DefaultPortRanges); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(record); string(again) != string(rec) {
		t.Fatalf("record changed on a second start: %q", again)
	}
}
