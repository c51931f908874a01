// Package testkit holds what keter's integration tests share: finding the
// real parts (sandbox systemd, nginx, PostgreSQL), a test root that
// DynamicUser units can read, the demo and behave apps and bundle builders.
package testkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keter-systemd/keter/internal/cgroup"
	"github.com/keter-systemd/keter/internal/freeport"
)

// InCI reports whether missing parts must fail instead of skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test on a developer machine and fails it in CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and a real part is missing: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// NeedSystemd requires a real systemd reachable as root through its
// private socket: the sandbox of scripts/sandbox.sh or a systemd PID 1.
func NeedSystemd(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "integration tests run as root")
	}
	fi, err := os.Stat("/run/systemd/private")
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		Missing(t, "no systemd at /run/systemd/private: run through scripts/sandbox.sh run -- go test ...")
	}
	if comm, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(comm)) != "systemd" {
		Missing(t, "PID 1 of this namespace is not systemd (run inside scripts/sandbox.sh)")
	}
}

// NeedBinary returns the path of a program, or skips/fails.
func NeedBinary(t testing.TB, name string, hint string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	Missing(t, "%s not found (%s)", name, hint)
	return ""
}

// TestRootBase is where test roots live: outside /tmp and /var/tmp (which
// PrivateTmp hides) and traversable by DynamicUser units.
const TestRootBase = "/srv/keter-test"

// Root makes a fresh, world-traversable folder for one test.
func Root(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll(TestRootBase, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(TestRootBase, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(TestRootBase, sanitize(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Token returns a short random lower-case hex string for unique names.
func Token() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
}

// FreePort returns a loopback port that was free a moment ago, above the
// kernel's ephemeral range, never the same twice (see freeport.Get).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// builds are the test apps built in this test binary, by package name.
var builds sync.Map // string → func() (string, error)

// DemoApp builds internal/demoapp once per test binary and returns its path.
func DemoApp(t testing.TB) string {
	t.Helper()
	return buildApp(t, "demoapp")
}

// BehaveApp builds internal/behaveapp once per test binary and returns its
// path.
func BehaveApp(t testing.TB) string {
	t.Helper()
	return buildApp(t, "behaveapp")
}

// buildApp builds internal/NAME once per test binary and returns its path.
func buildApp(t testing.TB, name string) string {
	t.Helper()
	f, _ := builds.LoadOrStore(name, sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "keter-"+name+"-")
		if err != nil {
			return "", err
		}
		path := filepath.Join(dir, name)
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", path, ".")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..", name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", &buildError{out: string(out), err: err}
		}
		return path, nil
	}))
	path, err := f.(func() (string, error))()
	if err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	return path
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// File is one tarball entry for Bundle.
type File struct {
	Body     []byte
	Mode     int64 // 0 means 0644
	Type     byte  // 0 means a regular file
	Linkname string
}

// Bundle writes a gzipped tarball with the given entries (sorted by name)
// to path. Entries ending in "/" are folders.
func Bundle(t testing.TB, path string, files map[string]File) {
	t.Helper()
	if err := os.WriteFile(path, BundleBytes(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BundleBytes is Bundle into memory.
func BundleBytes(t testing.TB, files map[string]File) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := files[n]
		h := &tar.Header{Name: n, Mode: f.Mode, Typeflag: f.Type, Linkname: f.Linkname, Size: int64(len(f.Body))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			if strings.HasSuffix(n, "/") {
				h.Typeflag = tar.TypeDir
				h.Mode = 0o755
			}
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(f.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// DemoBundle writes a flat-format bundle running the demo app for host
// with the given extra args to path.
func DemoBundle(t testing.TB, path, host string, args ...string) {
	t.Helper()
	appBundle(t, path, DemoApp(t), "demoapp", host, "", args)
}

// BehaveBundle writes a flat-format bundle running the behave app (see
// internal/behaveapp: give it "--version", V) for host with the given args
// to path. extraYAML, if any, is appended to keter.yaml as it is.
func BehaveBundle(t testing.TB, path, host string, extraYAML string, args ...string) {
	t.Helper()
	appBundle(t, path, BehaveApp(t), "behaveapp", host, extraYAML, args)
}

func appBundle(t testing.TB, path, binPath, name, host, extraYAML string, args []string) {
	t.Helper()
	bin, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	var y strings.Builder
	y.WriteString("exec: ../bin/" + name + "\nhost: " + host + "\nargs:\n")
	for _, a := range args {
		y.WriteString("  - " + quoteYAML(a) + "\n")
	}
	if extraYAML != "" {
		y.WriteString(extraYAML)
		if !strings.HasSuffix(extraYAML, "\n") {
			y.WriteString("\n")
		}
	}
	Bundle(t, path, map[string]File{
		"config/keter.yaml": {Body: []byte(y.String())},
		"bin/" + name:       {Body: bin, Mode: 0o755},
	})
}

func quoteYAML(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// OwnCgroup moves this test process into a fresh cgroup v2 of its own
// (back where it was at cleanup) and returns its path, e.g. to bind the
// port map to the test's own connections.
func OwnCgroup(t testing.TB) string {
	t.Helper()
	mount, err := cgroup.Mount()
	if err != nil {
		Missing(t, "no cgroup2: %v", err)
	}
	old, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var was string
	for _, l := range strings.Split(string(old), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			was = p
		}
	}
	cg := "/keter-test-" + Token()
	dir := filepath.Join(mount, cg)
	if err := os.Mkdir(dir, 0o755); err != nil {
		Missing(t, "cannot make a cgroup (root needed): %v", err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0o644); err != nil {
		os.Remove(dir)
		t.Fatalf("moving the test into %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(mount, was, "cgroup.procs"), pid, 0o644); err != nil {
			t.Errorf("moving the test back to %s: %v", was, err)
		}
		os.Remove(dir)
	})
	return cg
}

// InCgroup runs bash -c script in a new cgroup v2 of its own (not this
// process's) and returns its output and that cgroup's path through cg, which
// is called once the cgroup exists and before the script runs.
func InCgroup(t testing.TB, script string, cg func(path string)) (string, error) {
	t.Helper()
	mount, err := cgroup.Mount()
	if err != nil {
		Missing(t, "no cgroup2: %v", err)
	}
	path := "/keter-test-" + Token()
	dir := filepath.Join(mount, path)
	if err := os.Mkdir(dir, 0o755); err != nil {
		Missing(t, "cannot make a cgroup (root needed): %v", err)
	}
	defer os.Remove(dir)
	cg(path)
	out, err := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec bash -c "$2"`, "in-cgroup", dir, script).CombinedOutput()
	return string(out), err
}
