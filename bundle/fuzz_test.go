package bundle

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzValidHost: whatever is accepted is a plain DNS-style name or a
// one-label wildcard, with nothing nginx could read as syntax.
func FuzzValidHost(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com", "a b", "a;b", "keter1_0", "x.com\nserver {", "$host", "A.B", "*", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if ValidHost(h) != nil {
			return
		}
		if h == "" || len(h) > 253 {
			t.Fatalf("accepted %q (length %d)", h, len(h))
		}
		for i := 0; i < len(h); i++ {
			c := h[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '*' && i == 0
			if !ok {
				t.Fatalf("accepted %q with %q", h, c)
			}
		}
		if strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.") {
			t.Fatalf("accepted bad wildcard %q", h)
		}
		if strings.Contains(h, "..") || strings.HasSuffix(h, ".") || strings.HasPrefix(h, ".") {
			t.Fatalf("accepted empty label in %q", h)
		}
		if n, err := normHost(h); err != nil || n != strings.ToLower(h) {
			t.Fatalf("normHost(%q) = %q, %v", h, n, err)
		}
	})
}

// FuzzParse: no panic; whatever parses holds only valid hosts, paths that
// stay in the bundle and URLs that pass ValidURL.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/parse/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range parseErrorCases {
		f.Add([]byte(c.yaml))
	}
	f.Add([]byte("exec: ../a\nhost: a.com\n"))
	f.Add([]byte("stanzas:\n- type: redirect\n  host: a.com\n  actions:\n  - url: https://b.com/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, warns, err := ParseWithWarnings(data)
		if err != nil {
			if c != nil {
				t.Fatal("config and error together")
			}
			return
		}
		_ = warns
		inside := func(what, p string, abs bool) {
			if p == "" || p == ".." || strings.HasPrefix(p, "../") || (!abs && strings.HasPrefix(p, "/")) || filepath.Clean(p) != p {
				t.Fatalf("%s path %q escapes or is unclean", what, p)
			}
		}
		for i, s := range c.Stanzas {
			for _, h := range s.Hosts() {
				if ValidHost(h) != nil || h != strings.ToLower(h) {
					t.Fatalf("stanza %d host %q", i, h)
				}
			}
			set := 0
			for _, p := range []bool{s.WebApp != nil, s.StaticFiles != nil, s.Redirect != nil, s.ReverseProxy != nil, s.Background != nil} {
				if p {
					set++
				}
			}
			if set != 1 {
				t.Fatalf("stanza %d has %d bodies", i, set)
			}
			switch {
			case s.WebApp != nil:
				inside("exec", s.WebApp.Path, true)
				if s.WebApp.HealthCheckPath != "" && ValidPath(s.WebApp.HealthCheckPath) != nil {
					t.Fatalf("health path %q", s.WebApp.HealthCheckPath)
				}
			case s.Background != nil:
				inside("exec", s.Background.Path, true)
			case s.StaticFiles != nil:
				inside("root", s.StaticFiles.Root, false)
			case s.Redirect != nil:
				for _, a := range s.Redirect.Actions {
					if a.URL != "" && ValidURL(a.URL) != nil || a.Host != "" && ValidHost(a.Host) != nil || a.Path != "" && ValidPath(a.Path) != nil {
						t.Fatalf("redirect action %+v", a)
					}
				}
			case s.ReverseProxy != nil:
				if ValidHost(s.ReverseProxy.ReversedHost) != nil {
					t.Fatalf("reversed-host %q", s.ReverseProxy.ReversedHost)
				}
				for _, r := range append(s.ReverseProxy.RewriteRequest, s.ReverseProxy.RewriteResponse...) {
					if ValidHeaderName(r.Header) != nil || validRegex(r.From) != nil || strings.ContainsAny(r.To, "\"'`;\n{}#$") {
						t.Fatalf("rewrite %+v", r)
					}
				}
			}
		}
	})
}

// FuzzUnpack: no panic, nothing outside dest changes, and what lands in
// dest has safe modes and no symlink leading out. data is a tarball that
// the target gzips, or a raw .keter file (gzip or zstd) when raw is set.
func FuzzUnpack(f *testing.F) {
	for _, s := range unpackSeeds(f) {
		f.Add(s.data, s.raw)
	}
	lim := Limits{MaxTotalBytes: 1 << 20, MaxEntryBytes: 1 << 19, MaxEntries: 64, MaxPathLen: 256}
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		if !raw {
			data = gz(t, data)
		}
		parent, dest, untouched := sandbox(t)
		_ = unpackBytes(t, parent, dest, data, lim)
		untouched()
		realDest, err := filepath.EvalSymlinks(dest)
		if err != nil {
			return // dest itself may not exist if nothing was made
		}
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			m := fi.Mode()
			switch {
			case m&fs.ModeSymlink != 0:
				if r, err := filepath.EvalSymlinks(p); err == nil && r != realDest && !strings.HasPrefix(r, realDest+"/") {
					t.Fatalf("symlink %s resolves outside dest to %s", p, r)
				}
			case m.IsDir():
				if m.Perm() != 0o755 || m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
					t.Fatalf("folder %s mode %v", p, m)
				}
			case m.IsRegular():
				if m != 0o644 && m != 0o755 {
					t.Fatalf("file %s mode %v", p, m)
				}
			default:
				t.Fatalf("special file %s (%v)", p, m)
			}
			return nil
		})
	})
}

type seed struct {
	name string
	data []byte
	raw  bool
}

func unpackSeeds(t testing.TB) []seed {
	seeds := []seed{
		{"good", tarRaw(t, ent{name: "config/keter.yaml", body: "exec: ../a\nhost: a.com\n"}, ent{name: "a", body: "#!/bin/sh\n", mode: 0o755},
			ent{name: "d/", typ: tar.TypeDir}, ent{name: "d/l", typ: tar.TypeSymlink, link: "../a"}, ent{name: "h", typ: tar.TypeLink, link: "a"}), false},
		{"truncated", tarGz(t, ent{name: "a", body: strings.Repeat("x", 3000)})[:40], true},
		{"not-gzip", []byte("PK\x03\x04 not a tarball"), true},
		{"zstd", tarZst(t, ent{name: "config/keter.yaml", body: "exec: ../a\nhost: a.com\n"}, ent{name: "a", body: "#!/bin/sh\n", mode: 0o755},
			ent{name: "d/l", typ: tar.TypeSymlink, link: "../a"}), true},
		{"zstd-truncated", tarZst(t, ent{name: "a", body: strings.Repeat("x", 3000)})[:30], true},
	}
	for i, b := range breakouts {
		seeds = append(seeds, seed{fmt.Sprintf("breakout-%02d", i), tarRaw(t, b.ents("/tmp/fuzz-parent")...), false})
	}
	return seeds
}

// TestWriteFuzzSeeds writes the committed seed corpus under testdata/fuzz
// with -update, and checks that it is there otherwise.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzUnpack")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range unpackSeeds(t) {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.data)) + ")\nbool(" + strconv.FormatBool(s.raw) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, "seed-"+s.name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		pdir := filepath.Join("testdata", "fuzz", "FuzzParse")
		os.MkdirAll(pdir, 0o755)
		files, _ := filepath.Glob("testdata/parse/*.yaml")
		for _, p := range files {
			b, _ := os.ReadFile(p)
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			os.WriteFile(filepath.Join(pdir, "seed-"+strings.TrimSuffix(filepath.Base(p), ".yaml")), []byte(body), 0o644)
		}
		for i, c := range parseErrorCases {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(c.yaml) + ")\n"
			os.WriteFile(filepath.Join(pdir, fmt.Sprintf("seed-invalid-%02d", i)), []byte(body), 0o644)
		}
		hdir := filepath.Join("testdata", "fuzz", "FuzzValidHost")
		os.MkdirAll(hdir, 0o755)
		for i, h := range []string{"Tealc-Mint", "*.pong.example.com", "a.com; } server { listen 1; }", "x\ny", "127.0.0.1", "a:80"} {
			os.WriteFile(filepath.Join(hdir, fmt.Sprintf("seed-%d", i)), []byte("go test fuzz v1\nstring("+strconv.Quote(h)+")\n"), 0o644)
		}
	}
	for _, d := range []string{"FuzzUnpack", "FuzzParse", "FuzzValidHost"} {
		m, _ := filepath.Glob(filepath.Join("testdata", "fuzz", d, "*"))
		if len(m) == 0 {
			t.Errorf("no committed seed corpus for %s (run go test -run TestWriteFuzzSeeds -update)", d)
		}
	}
}
