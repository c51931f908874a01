package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
)

// TestRebootStartsKeptFolder: after a "reboot" (keter stopped, every unit
// gone), the next start deploys each app from its bundle again, reusing
// its version folder when it is as unpacked, unpacking again when it is
// not.
func TestRebootStartsKeptFolder(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir, bundle string)
		reused bool
	}{
		{"intact", func(*testing.T, string, string) {}, true},
		{"a file tampered with", func(t *testing.T, dir, _ string) {
			if err := os.WriteFile(filepath.Join(dir, "config", "keter.yaml"), []byte("# changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a file added", func(t *testing.T, dir, _ string) {
			if err := os.WriteFile(filepath.Join(dir, "planted"), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"the bundle file replaced by a copy", func(t *testing.T, _, bundle string) {
			b, err := os.ReadFile(bundle)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(bundle)
			if err := os.WriteFile(bundle, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"hashed by an older keter", func(t *testing.T, _, bundlePath string) {
			state := filepath.Join(filepath.Dir(filepath.Dir(bundlePath)), "etc", "state.json")
			b, err := os.ReadFile(state)
			if err != nil {
				t.Fatal(err)
			}
			older := strings.Replace(string(b), `"manifest":"`+bundle.ManifestVersion, `"manifest":"m2-`, 1)
			if older == string(b) {
				t.Fatalf("no manifest in %s", b)
			}
			if err := os.WriteFile(state, []byte(older), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			units := newFakeUnits()
			h := newHarness(t, units)
			h.drop("web.keter", "web.test")
			s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" && s.Live != nil })
			h.stop()
			// The reboot: every unit gone.
			for _, n := range units.names() {
				units.Stop(context.Background(), n)
			}
			old := s1.Live.Dir
			marker := filepath.Join(old, "config")
			before, err := os.Stat(marker)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(t, old, filepath.Join(h.cfg.Incoming(), "web.keter"))

			h.proxy = &fakeProxy{}
			h.start()
			s2 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil && s.Live.Version != s1.Live.Version })
			if got := s2.Live.Dir == old; got != tt.reused {
				t.Fatalf("new version's folder %s, before %s: reused %v, want %v", s2.Live.Dir, old, got, tt.reused)
			}
			after, err := os.Stat(marker)
			if tt.reused {
				if err != nil || !after.ModTime().Equal(before.ModTime()) {
					t.Errorf("kept folder touched: %v, mtime %v → %v", err, before.ModTime(), after.ModTime())
				}
			} else if _, err := os.Stat(old); !os.IsNotExist(err) {
				t.Errorf("the folder that did not match is still there (%v)", err)
			}
			waitFor(t, func() bool { return h.proxy.serving()["web"] == s2.Live.Version })
		})
	}
}
