package bundle

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
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

// TestManifestWithUnpackSums: the manifest from the sums UnpackSums took
// while writing equals the one Manifest reads back, for hard links, a
// file a later entry replaces (by a file and by a link) and a symlink.
func TestManifestWithUnpackSums(t *testing.T) {
	tests := []struct {
		name string
		ents []ent
	}{
		{"plain", []ent{{name: "config/keter.yaml", body: "exec: ../app\n"}, {name: "app", body: "#!/bin/sh\n", mode: 0o755}}},
		{"hard link", []ent{{name: "a", body: "one"}, {name: "b", typ: tar.TypeLink, link: "a"}}},
		{"replaced by a file", []ent{{name: "a", body: "one"}, {name: "b", typ: tar.TypeLink, link: "a"}, {name: "a", body: "two"}}},
		{"replaced by a link", []ent{{name: "a", body: "one"}, {name: "c", body: "three"}, {name: "a", typ: tar.TypeSymlink, link: "c"}}},
		{"empty file", []ent{{name: "empty"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			archive := filepath.Join(dir, "a.keter")
			if err := os.WriteFile(archive, tarGz(t, tt.ents...), 0o644); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(dir, "out")
			digest, sums, err := UnpackSums(context.Background(), archive, dest, DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := Digest(archive); digest != want {
				t.Errorf("digest %s, want %s", digest, want)
			}
			got, err := ManifestWith(dest, sums)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Manifest(dest)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || !strings.HasPrefix(got, ManifestVersion) {
				t.Errorf("ManifestWith = %s, Manifest = %s", got, want)
			}
			// A changed file is seen by Manifest, not by stale sums: the
			// sums are only for a folder just unpacked.
			if err := os.WriteFile(filepath.Join(dest, tt.ents[0].name), []byte("changed"), 0o644); err == nil {
				if again, _ := Manifest(dest); again == want {
					t.Error("Manifest did not see a changed file")
				}
			}
		})
	}
}
