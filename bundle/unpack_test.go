package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/keter-systemd/keter/internal/testkit"
)

// ent is one tar entry, written in the given order (order matters for
// symlink-then-write attacks).
type ent struct {
	name string
	typ  byte
	mode int64
	body string
	link string
	size int64 // header size when it must differ from body (lies)
}

func tarGz(t testing.TB, ents ...ent) []byte {
	t.Helper()
	return gz(t, tarRaw(t, ents...))
}

// compressions are the two a bundle may come in.
var compressions = []struct {
	name string
	pack func(testing.TB, ...ent) []byte
}{{"gzip", tarGz}, {"zstd", tarZst}}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarRaw(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox makes parent/{dest is created by Unpack, outside/secret} and
// returns parent, dest and a function asserting that nothing but dest
// changed inside parent.
func sandbox(t *testing.T) (parent, dest string, untouched func()) {
	t.Helper()
	parent = t.TempDir()
	if err := os.Mkdir(filepath.Join(parent, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "outside", "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest = filepath.Join(parent, "dest")
	return parent, dest, func() {
		t.Helper()
		var names []string
		filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(parent, p)
			if rel == "dest" && d.IsDir() {
				return filepath.SkipDir
			}
			names = append(names, rel)
			return nil
		})
		if got := strings.Join(names, ","); got != ".,outside,outside/secret,archive.keter" && got != ".,archive.keter,outside,outside/secret" {
			t.Errorf("outside dest changed: %s", got)
		}
		if b, err := os.ReadFile(filepath.Join(parent, "outside", "secret")); err != nil || string(b) != "secret" {
			t.Errorf("outside/secret changed: %q %v", b, err)
		}
		fi, err := os.Stat(filepath.Join(parent, "outside", "secret"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("outside/secret mode changed: %v %v", fi, err)
		}
	}
}

func unpackBytes(t *testing.T, parent, dest string, data []byte, lim Limits) error {
	t.Helper()
	archive := filepath.Join(parent, "archive.keter")
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return Unpack(t.Context(), archive, dest, lim)
}

// breakouts are hostile tarballs; ents gets the parent of dest for
// absolute names.
var small = Limits{MaxTotalBytes: 100, MaxEntryBytes: 60, MaxEntries: 5, MaxPathLen: 40}
var breakouts = []struct {
	name  string
	ents  func(parent string) []ent
	lim   Limits
	class error
	entry string // must appear in the error
}{
	{"dotdot", func(string) []ent { return []ent{{name: "../outside/pwned", body: "x"}} }, Limits{}, ErrUnsafeEntry, `"../outside/pwned"`},
	{"nested dotdot", func(string) []ent { return []ent{{name: "a/b/../../../outside/pwned", body: "x"}} }, Limits{}, ErrUnsafeEntry, "a/b/../../.."},
	{"absolute name", func(p string) []ent { return []ent{{name: p + "/outside/pwned", body: "x"}} }, Limits{}, ErrUnsafeEntry, "/outside/pwned"},
	{"symlink absolute then write", func(p string) []ent {
		return []ent{{name: "l", typ: tar.TypeSymlink, link: p + "/outside"}, {name: "l/pwned", body: "x"}}
	}, Limits{}, ErrUnsafeEntry, `entry "l"`},
	{"symlink relative escape then write", func(string) []ent {
		return []ent{{name: "l", typ: tar.TypeSymlink, link: "../outside"}, {name: "l/pwned", body: "x"}}
	}, Limits{}, ErrUnsafeEntry, `entry "l"`},
	{"symlink dotdot after name", func(string) []ent {
		return []ent{{name: "d/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "d/../.."}}
	}, Limits{}, ErrUnsafeEntry, `entry "l"`},
	{"symlink below symlink to dot", func(string) []ent {
		return []ent{{name: "a", typ: tar.TypeSymlink, link: "."}, {name: "a/b", typ: tar.TypeSymlink, link: "../outside"}, {name: "a/b/pwned", body: "x"}}
	}, Limits{}, ErrUnsafeEntry, `entry "a/b"`},
	{"symlink deep escape", func(string) []ent {
		return []ent{{name: "a/b/l", typ: tar.TypeSymlink, link: "../../../outside/secret"}}
	}, Limits{}, ErrUnsafeEntry, `entry "a/b/l"`},
	{"hardlink escape", func(string) []ent {
		return []ent{{name: "h", typ: tar.TypeLink, link: "../outside/secret"}}
	}, Limits{}, ErrUnsafeEntry, `entry "h"`},
	{"hardlink absolute", func(p string) []ent {
		return []ent{{name: "h", typ: tar.TypeLink, link: p + "/outside/secret"}}
	}, Limits{}, ErrUnsafeEntry, `entry "h"`},
	{"hardlink through symlink", func(p string) []ent {
		return []ent{{name: "l", typ: tar.TypeSymlink, link: "."}, {name: "h", typ: tar.TypeLink, link: "l/../outside/secret"}}
	}, Limits{}, ErrUnsafeEntry, `entry "h"`},
	{"hardlink to symlink", func(string) []ent {
		return []ent{{name: "d/", typ: tar.TypeDir}, {name: "d/s", typ: tar.TypeSymlink, link: "../x"}, {name: "h", typ: tar.TypeLink, link: "d/s"}}
	}, Limits{}, ErrUnsafeEntry, `entry "h"`},
	{"char device", func(string) []ent { return []ent{{name: "null", typ: tar.TypeChar}} }, Limits{}, ErrUnsupported, `entry "null"`},
	{"block device", func(string) []ent { return []ent{{name: "sda", typ: tar.TypeBlock}} }, Limits{}, ErrUnsupported, `entry "sda"`},
	{"fifo", func(string) []ent { return []ent{{name: "fifo", typ: tar.TypeFifo}} }, Limits{}, ErrUnsupported, `entry "fifo"`},
	{"file replaces folder", func(string) []ent {
		return []ent{{name: "d/f", body: "x"}, {name: "d", body: "y"}}
	}, Limits{}, ErrUnsafeEntry, `entry "d"`},
	{"oversize entry", func(string) []ent { return []ent{{name: "big", body: strings.Repeat("x", 61)}} }, small, ErrLimit, `entry "big"`},
	{"oversize total", func(string) []ent {
		return []ent{{name: "a", body: strings.Repeat("x", 50)}, {name: "b", body: strings.Repeat("x", 51)}}
	}, small, ErrLimit, `entry "b"`},
	{"too many entries", func(string) []ent {
		return []ent{{name: "1"}, {name: "2"}, {name: "3"}, {name: "4"}, {name: "5"}, {name: "6"}}
	}, small, ErrLimit, `entry "6"`},
	{"path too long", func(string) []ent { return []ent{{name: strings.Repeat("a/", 21) + "f"}} }, small, ErrLimit, "aaa"[:1]},
	{"symlink target too long", func(string) []ent {
		return []ent{{name: "l", typ: tar.TypeSymlink, link: strings.Repeat("x", 41)}}
	}, small, ErrLimit, `entry "l"`},
}

// TestBreakouts is a table of hostile tarballs (in the spirit of
// containerd's TestBreakouts): each must be refused with the right class
// of error naming the entry, and nothing outside dest may change.
func TestBreakouts(t *testing.T) {
	for _, c := range compressions {
		for _, tt := range breakouts {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				parent, dest, untouched := sandbox(t)
				lim := tt.lim
				if lim == (Limits{}) {
					lim = DefaultLimits()
				}
				err := unpackBytes(t, parent, dest, c.pack(t, tt.ents(parent)...), lim)
				if !errors.Is(err, tt.class) {
					t.Fatalf("error %v, want %v", err, tt.class)
				}
				t.Log(err)
				if !strings.Contains(err.Error(), tt.entry) {
					t.Errorf("error %q does not name the entry %s", err, tt.entry)
				}
				untouched()
				if _, err := os.Lstat(filepath.Join(dest, "l", "pwned")); err == nil {
					t.Errorf("wrote through a symlink")
				}
			})
		}
	}
}

func TestUnpackCorrupt(t *testing.T) {
	good := tarGz(t, ent{name: "config/keter.yaml", body: strings.Repeat("exec: ../a\n", 2000)}, ent{name: "a", body: "x", mode: 0o755})
	goodZst := tarZst(t, ent{name: "config/keter.yaml", body: strings.Repeat("exec: ../a\n", 2000)}, ent{name: "a", body: "x", mode: 0o755})
	tests := []struct {
		name string
		data []byte
		say  string // the error must say it too
	}{
		{"not gzip", []byte("this is not a gzip file at all"), ""},
		{"empty", nil, ""},
		{"truncated in the middle", good[:len(good)/2], ""},
		{"truncated trailer", good[:len(good)-4], ""},
		{"bad checksum", func() []byte {
			b := bytes.Clone(good)
			b[len(b)-8] ^= 0xff
			return b
		}(), ""},
		{"trailing garbage", append(bytes.Clone(good), "garbage"...), ""},
		{"gzip of non-tar", func() []byte {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(bytes.Repeat([]byte("hello "), 200))
			zw.Close()
			return buf.Bytes()
		}(), ""},
		// What would be a corrupt gzip is a corrupt zstd; a window beyond
		// keter's bound says what to do.
		{"zstd magic only", zstdMagic, ""},
		{"zstd truncated in the middle", goodZst[:len(goodZst)/2], ""},
		{"zstd truncated checksum", goodZst[:len(goodZst)-2], ""},
		{"zstd bad checksum", func() []byte {
			b := bytes.Clone(goodZst)
			b[len(b)-1] ^= 0xff
			return b
		}(), ""},
		{"zstd trailing garbage", append(bytes.Clone(goodZst), "garbage"...), ""},
		{"zstd of non-tar", zst(t, bytes.Repeat([]byte("hello "), 200)), ""},
		{"zstd window too large", zst(t, tarRaw(t, ent{name: "a", body: strings.Repeat("y", 1<<20)}),
			zstd.WithWindowSize(64<<20), zstd.WithSingleSegment(false)), "without --long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dest, untouched := sandbox(t)
			err := unpackBytes(t, parent, dest, tt.data, DefaultLimits())
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.say) {
				t.Errorf("error %q does not say %q", err, tt.say)
			}
			untouched()
		})
	}
	t.Run("good one unpacks", func(t *testing.T) {
		parent, dest, untouched := sandbox(t)
		if err := unpackBytes(t, parent, dest, good, DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		untouched()
	})
}

// TestUnpackModes checks what apps (another user) and nginx need: folders
// 0755, files world-readable, exec bits kept, setuid/setgid/sticky gone.
func TestUnpackModes(t *testing.T) {
	parent, dest, untouched := sandbox(t)
	err := unpackBytes(t, parent, dest, tarGz(t,
		ent{name: "./", typ: tar.TypeDir, mode: 0o700},
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o1777},
		ent{name: "bin/suid", mode: 0o4755, body: "#!/bin/sh\n"},
		ent{name: "bin/sgid", mode: 0o2750, body: "x"},
		ent{name: "bin/owner-exec", mode: 0o700, body: "x"},
		ent{name: "private", mode: 0o600, body: "x"},
		ent{name: "deep/implicit/dirs/f", mode: 0o640, body: "x"},
		ent{name: "link", typ: tar.TypeSymlink, link: "bin/suid"},
		ent{name: "hard", typ: tar.TypeLink, link: "private"},
		ent{name: "lnkdir", typ: tar.TypeSymlink, link: "deep/implicit"},
		ent{name: "lnkdir/through", body: "inside"},
		ent{name: "private", mode: 0o644, body: "replaced"},
		ent{name: "link", body: "symlink replaced by a file"},
	), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	untouched()
	want := map[string]fs.FileMode{
		".":                     fs.ModeDir | 0o755,
		"bin":                   fs.ModeDir | 0o755,
		"bin/suid":              0o755,
		"bin/sgid":              0o755,
		"bin/owner-exec":        0o755,
		"private":               0o644,
		"hard":                  0o644,
		"deep":                  fs.ModeDir | 0o755,
		"deep/implicit":         fs.ModeDir | 0o755,
		"deep/implicit/dirs":    fs.ModeDir | 0o755,
		"deep/implicit/dirs/f":  0o644,
		"deep/implicit/through": 0o644,
		"link":                  0o644,
		"lnkdir":                fs.ModeSymlink | 0o777,
	}
	for name, m := range want {
		fi, err := os.Lstat(filepath.Join(dest, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode() != m {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), m)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "private")); string(b) != "replaced" {
		t.Errorf("private = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "hard")); string(b) != "x" {
		t.Errorf("hard link content changed with the replaced target: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "bin/suid")); string(b) != "#!/bin/sh\n" {
		t.Errorf("writing over the symlink wrote through it: bin/suid = %q", b)
	}
}

// TestUnpackUsableByOtherUser checks the point of the mode rules for real:
// an unprivileged user (as a DynamicUser app or an nginx worker is) can
// read the unpacked files and run the executables.
func TestUnpackUsableByOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root to switch to an unprivileged user")
	}
	setpriv := testkit.NeedBinary(t, "setpriv", "util-linux")
	root := testkit.Root(t)
	archive := filepath.Join(root, "app.keter")
	if err := os.WriteFile(archive, tarGz(t,
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o700},
		ent{name: "bin/app", mode: 0o700, body: "#!/bin/sh\necho ran-as-$(id -u)\n"},
		ent{name: "static/css/site.css", mode: 0o600, body: "body{}"},
	), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(root, "v1")
	if err := Unpack(t.Context(), archive, dest, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	as := func(args ...string) (string, error) {
		out, err := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := as(filepath.Join(dest, "bin", "app")); err != nil || out != "ran-as-65534" {
		t.Errorf("running bin/app as nobody: %q %v", out, err)
	}
	if out, err := as("cat", filepath.Join(dest, "static", "css", "site.css")); err != nil || out != "body{}" {
		t.Errorf("reading static file as nobody: %q %v", out, err)
	}
}

func TestUnpackCancelled(t *testing.T) {
	parent, dest, untouched := sandbox(t)
	archive := filepath.Join(parent, "archive.keter")
	os.WriteFile(archive, tarGz(t, ent{name: "a", body: "x"}), 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Unpack(ctx, archive, dest, DefaultLimits()); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	untouched()
}

func TestUnpackRefusesNonEmptyDest(t *testing.T) {
	parent, dest, _ := sandbox(t)
	os.MkdirAll(dest, 0o755)
	os.WriteFile(filepath.Join(dest, "old"), []byte("x"), 0o644)
	err := unpackBytes(t, parent, dest, tarGz(t, ent{name: "a", body: "x"}), DefaultLimits())
	if err == nil || !strings.Contains(err.Error(), "new or empty folder") {
		t.Fatalf("error %v", err)
	}
}

// TestUnpackDigest: one read gives the same digest as Digest and the same
// tree as Unpack, including bytes after the gzip stream's last block.
func TestUnpackDigest(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "a.keter")
	testkit.Bundle(t, archive, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("exec: ../app\nhost: a.test\n")},
		"app":               {Body: bytes.Repeat([]byte("x"), 3<<20), Mode: 0o755},
	})
	want, err := Digest(archive)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "out")
	got, err := UnpackDigest(context.Background(), archive, dest, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("UnpackDigest = %s, Digest = %s", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dest, "app")); err != nil || fi.Size() != 3<<20 {
		t.Fatalf("app not unpacked whole: %v", err)
	}
}
