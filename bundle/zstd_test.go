package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func zst(t testing.TB, b []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, append([]zstd.EOption{zstd.WithEncoderCRC(true)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarZst(t testing.TB, ents ...ent) []byte {
	t.Helper()
	return zst(t, tarRaw(t, ents...))
}

// TestUnpackZstd: a zstd bundle unpacks to the same tree, modes and
// sums as the gzip one of the same tarball.
func TestUnpackZstd(t *testing.T) {
	ents := []ent{
		{name: "config/keter.yaml", body: strings.Repeat("exec: ../bin/app\n", 300)},
		{name: "bin/app", body: "#!/bin/sh\necho hi\n", mode: 0o4755},
		{name: "static/big.txt", body: strings.Repeat("0123456789abcdef", 1<<14)},
		{name: "static/link", typ: tar.TypeSymlink, link: "big.txt"},
		{name: "static/hard", typ: tar.TypeLink, link: "static/big.txt"},
	}
	dir := t.TempDir()
	unpack := func(kind string, data []byte) (string, Sums, string) {
		t.Helper()
		archive := filepath.Join(dir, kind+".keter")
		if err := os.WriteFile(archive, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, kind)
		digest, sums, err := UnpackSums(t.Context(), archive, dest, DefaultLimits())
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if want, _ := Digest(archive); digest != want {
			t.Errorf("%s: digest %s, want %s", kind, digest, want)
		}
		m, err := ManifestWith(dest, sums)
		if err != nil {
			t.Fatal(err)
		}
		return digest, sums, m
	}
	_, gzSums, gzMan := unpack("gzip", tarGz(t, ents...))
	_, zSums, zMan := unpack("zstd", tarZst(t, ents...))
	if len(zSums) != len(gzSums) || len(zSums) == 0 {
		t.Fatalf("sums: zstd %d files, gzip %d", len(zSums), len(gzSums))
	}
	for name, s := range gzSums {
		if zSums[name] != s {
			t.Errorf("%s: zstd sum differs from gzip's", name)
		}
	}
	if zMan != gzMan || zMan == "" {
		t.Errorf("manifests differ:\nzstd %s\ngzip %s", zMan, gzMan)
	}
	fi, err := os.Stat(filepath.Join(dir, "zstd", "bin", "app"))
	if err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("bin/app from zstd: %v %v, want 0755 without setuid", fi.Mode(), err)
	}
}

// TestWaitCompleteZstd: a stable zstd bundle is complete; a truncated one
// is not.
func TestWaitCompleteZstd(t *testing.T) {
	data := tarZst(t, ent{name: "config/keter.yaml", body: strings.Repeat("# padding\n", 5000)})
	p := filepath.Join(t.TempDir(), "app.keter")
	os.WriteFile(p, data, 0o644)
	if err := WaitComplete(t.Context(), p, 20*time.Millisecond); err != nil {
		t.Fatalf("complete: %v", err)
	}
	os.WriteFile(p, data[:len(data)-3], 0o644)
	if err := WaitComplete(t.Context(), p, 20*time.Millisecond); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: error %v, want ErrCorrupt", err)
	}
}

// TestBuildZstd: keter bundle -zstd writes a zstd tarball, the same bytes
// from the same folder, with a window Unpack accepts, and it unpacks to
// the tree a gzip build gives.
func TestBuildZstd(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"config/keter.yaml": loadYAML,
		"bin/app*":          "#!/bin/sh\necho app\n",
		"bin/worker*":       "#!/bin/sh\necho worker\n",
		"public/big.txt":    strings.Repeat("keter ", 1<<20),
	})
	out := filepath.Join(t.TempDir(), "myapp.keter")
	if err := BuildWith(src, out, Zstd); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(first, zstdMagic) {
		t.Fatalf("not a zstd stream: % x", first[:8])
	}
	if err := BuildWith(src, out, Zstd); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(out); !bytes.Equal(first, second) {
		t.Error("two zstd builds of the same folder differ")
	}
	gz := filepath.Join(t.TempDir(), "myapp.keter")
	if err := Build(src, gz); err != nil {
		t.Fatal(err)
	}
	var mans []string
	for _, b := range []string{out, gz} {
		dest := filepath.Join(t.TempDir(), "v")
		if err := Unpack(t.Context(), b, dest, DefaultLimits()); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		m, err := Manifest(dest)
		if err != nil {
			t.Fatal(err)
		}
		mans = append(mans, m)
	}
	if mans[0] != mans[1] {
		t.Errorf("zstd and gzip builds unpack differently:\n%s\n%s", mans[0], mans[1])
	}
}

// TestUnpackZstdSkippableFirst: a zstd stream that opens with a skippable
// frame (as pzstd writes) is zstd too.
func TestUnpackZstdSkippableFirst(t *testing.T) {
	skip := []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4}
	data := append(skip, tarZst(t, ent{name: "config/keter.yaml", body: "exec: ../a\n"}, ent{name: "a", body: "x", mode: 0o755})...)
	parent, dest, untouched := sandbox(t)
	if err := unpackBytes(t, parent, dest, data, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	untouched()
	if b, err := os.ReadFile(filepath.Join(dest, "a")); err != nil || string(b) != "x" {
		t.Fatalf("a: %q %v", b, err)
	}
}
