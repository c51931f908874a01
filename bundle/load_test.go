package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTree writes files (name → content; a trailing "/" makes a folder,
// a "*" suffix on the name makes the file executable) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		mode := os.FileMode(0o644)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o755
		}
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

const loadYAML = `stanzas:
  - type: webapp
    exec: ../bin/app
    host: a.example.com
  - type: background
    exec: ../bin/worker
  - type: static-files
    host: s.example.com
    root: ../public
`

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // error substrings; nil means success
		class error
	}{
		{"ok keter.yaml", map[string]string{"config/keter.yaml": loadYAML, "bin/app*": "x", "bin/worker*": "x", "public/": ""}, nil, nil},
		{"keter.yml wins", map[string]string{"config/keter.yml": loadYAML, "config/keter.yaml": "garbage: [", "bin/app*": "x", "bin/worker*": "x", "public/": ""}, nil, nil},
		{"no config", map[string]string{"bin/app*": "x"}, []string{"config/keter.yml and config/keter.yaml"}, ErrNoConfig},
		{"missing exec", map[string]string{"config/keter.yaml": loadYAML, "bin/worker*": "x", "public/": ""},
			[]string{"stanzas[0].exec: executable not found: bin/app"}, ErrExecutableNotFound},
		{"not executable", map[string]string{"config/keter.yaml": loadYAML, "bin/app": "x", "bin/worker*": "x", "public/": ""},
			[]string{"stanzas[0].exec: file is not executable: bin/app has mode -rw-r--r--"}, ErrFileNotExecutable},
		{"exec is a folder", map[string]string{"config/keter.yaml": loadYAML, "bin/app/": "", "bin/worker*": "x", "public/": ""},
			[]string{"bin/app is a folder"}, ErrFileNotExecutable},
		{"all problems at once", map[string]string{"config/keter.yaml": loadYAML, "public": "a file"},
			[]string{"stanzas[0].exec: executable not found", "stanzas[1].exec: executable not found", "stanzas[2].root: public is not a folder"}, ErrExecutableNotFound},
		{"parse errors name the file", map[string]string{"config/keter.yaml": "stanzas:\n- type: nope\n"},
			[]string{"parsing config/keter.yaml", `stanzas[0].type: invalid value: unknown stanza type "nope"`}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			c, err := Load(dir)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(c.Stanzas) != 3 || c.Stanzas[0].WebApp.Path != "bin/app" {
					t.Errorf("loaded %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("error %v is not %v", err, tt.class)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadStaticRootSymlinkOutside(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"config/keter.yaml": "static-hosts:\n- host: a.com\n  root: ../public\n"})
	if err := os.Symlink("/etc", filepath.Join(dir, "public")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "static-hosts") && !strings.Contains(err.Error(), "stanzas[0].root") {
		t.Fatalf("static root through a symlink to /etc accepted: %v", err)
	}
}

func TestBuildUnpackRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"config/keter.yaml": loadYAML,
		"bin/app*":          "#!/bin/sh\necho app\n",
		"bin/worker*":       "#!/bin/sh\necho worker\n",
		"public/index.html": "<h1>hi</h1>",
		"public/empty/":     "",
	})
	if err := os.Symlink("index.html", filepath.Join(src, "public", "home.html")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "myapp.keter")
	if err := Build(src, out); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic: same tree, same bytes.
	if err := Build(src, out); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(out); !bytes.Equal(first, second) {
		t.Error("two builds of the same folder differ")
	}
	names := tarNames(t, first)
	if got := strings.Join(names, " "); got != "bin/ bin/app bin/worker config/ config/keter.yaml public/ public/empty/ public/home.html public/index.html" {
		t.Errorf("entries %s", got)
	}
	c, err := Check(t.Context(), out)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stanzas[2].StaticFiles.Root != "public" {
		t.Errorf("checked config %+v", c.Stanzas[2])
	}
	dest := filepath.Join(t.TempDir(), "v1")
	if err := Unpack(t.Context(), out, dest, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dest, "bin", "app"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("exec bit lost: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "public", "home.html")); string(b) != "<h1>hi</h1>" {
		t.Errorf("symlink content %q", b)
	}
}

func TestBuildRefuses(t *testing.T) {
	t.Run("invalid config", func(t *testing.T) {
		src := t.TempDir()
		writeTree(t, src, map[string]string{"config/keter.yaml": "exec: ../app\nhost: 'bad host'\n", "app*": "x"})
		out := filepath.Join(t.TempDir(), "x.keter")
		if err := Build(src, out); err == nil || !strings.Contains(err.Error(), "host: invalid value") {
			t.Fatalf("error %v", err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("bundle written despite the error")
		}
	})
	t.Run("symlink outside", func(t *testing.T) {
		src := t.TempDir()
		writeTree(t, src, map[string]string{"config/keter.yaml": "exec: ../app\nhost: a.com\n", "app*": "x"})
		os.Symlink("/etc/passwd", filepath.Join(src, "pw"))
		if err := Build(src, filepath.Join(t.TempDir(), "x.keter")); !errors.Is(err, ErrUnsafeEntry) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("bad name", func(t *testing.T) {
		if err := Build(t.TempDir(), filepath.Join(t.TempDir(), "x y.keter")); !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v", err)
		}
	})
}

func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestCheckRefusesHostile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "evil.keter")
	os.WriteFile(p, tarGz(t, ent{name: "config/keter.yaml", body: "exec: ../a\nhost: a.com\n"}, ent{name: "a", typ: tar.TypeSymlink, link: "/bin/sh"}), 0o644)
	if _, err := Check(t.Context(), p); !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("error %v", err)
	}
}

// TestWaitComplete writes a bundle slowly, as cp does, and checks that
// WaitComplete returns only after the last byte, with a clean gzip end.
func TestWaitComplete(t *testing.T) {
	data := tarGz(t, ent{name: "config/keter.yaml", body: strings.Repeat("# padding\n", 5000)})
	t.Run("slow writer", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "app.keter")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var finished time.Time
		go func() {
			defer close(done)
			for i := 0; i < len(data); i += len(data)/5 + 1 {
				f.Write(data[i:min(i+len(data)/5+1, len(data))])
				time.Sleep(30 * time.Millisecond)
			}
			finished = time.Now()
			f.Close()
		}()
		if err := WaitComplete(t.Context(), p, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		<-done
		if time.Now().Before(finished) {
			t.Error("returned before the writer finished")
		}
	})
	t.Run("stable but truncated", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "app.keter")
		os.WriteFile(p, data[:len(data)-3], 0o644)
		if err := WaitComplete(t.Context(), p, 20*time.Millisecond); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v, want ErrCorrupt", err)
		}
	})
	t.Run("vanished", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "app.keter")
		os.WriteFile(p, data[:10], 0o644)
		go func() { time.Sleep(30 * time.Millisecond); os.Remove(p) }()
		if err := WaitComplete(t.Context(), p, 10*time.Second); !errors.Is(err, ErrVanished) {
			t.Fatalf("error %v, want ErrVanished", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "app.keter")
		os.WriteFile(p, data, 0o644)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := WaitComplete(ctx, p, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("abc"), 0o644)
	os.WriteFile(b, []byte("abd"), 0o644)
	da, err := Digest(a)
	if err != nil {
		t.Fatal(err)
	}
	if da != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("sha256(abc) = %s", da)
	}
	if db, _ := Digest(b); db == da {
		t.Error("different files, same digest")
	}
	if _, err := Digest(filepath.Join(dir, "none")); err == nil {
		t.Error("no error for a missing file")
	}
}
