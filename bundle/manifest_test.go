package bundle

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestManifest(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "config"), 0o755)
		os.WriteFile(filepath.Join(dir, "config", "keter.yaml"), []byte("stanzas: []\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\n"), 0o755)
		os.Symlink("app", filepath.Join(dir, "run"))
		return dir
	}
	base, err := Manifest(build(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(dir string)
		same   bool
	}{
		{"untouched", func(string) {}, true},
		{"a launcher written by keter", func(d string) { os.WriteFile(filepath.Join(d, ".keter-exec-web0"), []byte("x"), 0o755) }, true},
		{"a dot file deeper", func(d string) { os.WriteFile(filepath.Join(d, "config", ".keter-exec-web0"), nil, 0o644) }, false},
		{"owner and time changed", func(d string) {
			os.Chown(filepath.Join(d, "app"), 1234, 1234)
			os.Chtimes(filepath.Join(d, "app"), time.Unix(1, 0), time.Unix(1, 0))
		}, true},
		{"a byte changed", func(d string) { os.WriteFile(filepath.Join(d, "app"), []byte("#!/bin/sH\n"), 0o755) }, false},
		{"a file added", func(d string) { os.WriteFile(filepath.Join(d, "extra"), nil, 0o644) }, false},
		{"a file removed", func(d string) { os.Remove(filepath.Join(d, "config", "keter.yaml")) }, false},
		{"mode changed", func(d string) { os.Chmod(filepath.Join(d, "app"), 0o644) }, false},
		{"link retargeted", func(d string) {
			os.Remove(filepath.Join(d, "run"))
			os.Symlink("config", filepath.Join(d, "run"))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := build(t)
			tt.change(dir)
			got, err := Manifest(dir)
			if err != nil {
				t.Fatal(err)
			}
			if (got == base) != tt.same {
				t.Errorf("manifest equal to the original: %v; want %v", got == base, tt.same)
			}
		})
	}
	if _, err := Manifest(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Error("a missing folder hashed without error")
	}
}
