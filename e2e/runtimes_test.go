package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// langApp is a small web app under testdata/runtimes for one language
// runtime from Debian.
type langApp struct {
	name string
	bin  string // the runtime's program as Debian installs it, "" for none
	hint string // how to install it
	dir  string // the app's files, under testdata/runtimes; "" for none
	exec string // the bundle's exec; "" runs bin
	args []string
	want string // GET / answers this
	// notLogged must not appear in the app's log (a runtime that limps on).
	notLogged string
	// extra adds files (e.g. a compiled binary) to the bundle.
	extra func(t *testing.T) map[string]testkit.File
}

func langApps() []langApp {
	return []langApp{
		{name: "node", bin: "/usr/bin/node", hint: "apt-get install nodejs", dir: "node", exec: "../run.sh", want: "hello from node"},
		{name: "java", bin: "/usr/bin/java", hint: "apt-get install openjdk-17-jre-headless", dir: "java", args: []string{"App.java"}, want: "hello from java"},
		{name: "python", bin: "/usr/bin/python3", hint: "apt-get install python3", dir: "python", args: []string{"app.py"}, want: "hello from python"},
		{name: "php", bin: "/usr/bin/php", hint: "apt-get install php-cli", dir: "php", exec: "../run.sh", want: "hello from php",
			notLogged: "Allocation of JIT memory failed"},
		{name: "ghc-warp", exec: "../dist/build/warpapp/warpapp", args: []string{"production"}, want: "hello from warp production",
			extra: func(t *testing.T) map[string]testkit.File {
				return map[string]testkit.File{"dist/build/warpapp/warpapp": {Body: mustRead(t, testkit.WarpApp(t)), Mode: 0o755}}
			}},
	}
}

// bundle writes the app as a flat bundle whose config sets only exec,
// args and host, as a user of that runtime would.
func (a langApp) bundle(t *testing.T, path, host string) {
	t.Helper()
	files := a.files(t)
	var y strings.Builder
	fmt.Fprintf(&y, "exec: %s\nhost: %s\n", a.execPath(), host)
	if len(a.args) > 0 {
		y.WriteString("args:\n")
		for _, arg := range a.args {
			fmt.Fprintf(&y, "  - %q\n", arg)
		}
	}
	files["config/keter.yaml"] = testkit.File{Body: []byte(y.String())}
	testkit.Bundle(t, path, files)
}

// stanzaBundle writes the app as one webapp stanza with more keys.
func (a langApp) stanzaBundle(t *testing.T, path, host, stanzaYAML string) {
	t.Helper()
	files := a.files(t)
	var y strings.Builder
	fmt.Fprintf(&y, "stanzas:\n  - type: webapp\n    exec: %s\n    host: %s\n    args: [", a.execPath(), host)
	for i, arg := range a.args {
		if i > 0 {
			y.WriteString(", ")
		}
		fmt.Fprintf(&y, "%q", arg)
	}
	y.WriteString("]\n" + stanzaYAML)
	files["config/keter.yaml"] = testkit.File{Body: []byte(y.String())}
	testkit.Bundle(t, path, files)
}

func (a langApp) execPath() string {
	if a.exec == "" {
		return a.bin
	}
	return a.exec
}

// files are the app's files; it skips (fails in CI) when the runtime is
// not installed.
func (a langApp) files(t *testing.T) map[string]testkit.File {
	t.Helper()
	// Debian's path, not PATH's first match (a developer's pyenv shim
	// under /root is no use to a sandboxed app).
	if _, err := os.Stat(a.bin); a.bin != "" && err != nil {
		testkit.Missing(t, "%s: %v (%s, or run scripts/deps.sh)", a.name, err, a.hint)
	}
	files := map[string]testkit.File{}
	if a.dir != "" {
		src := filepath.Join("testdata", "runtimes", a.dir)
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = testkit.File{Body: mustRead(t, filepath.Join(src, e.Name())), Mode: int64(fi.Mode().Perm())}
		}
	}
	if a.extra != nil {
		for n, f := range a.extra(t) {
			files[n] = f
		}
	}
	return files
}

// ownPorts gives a keter its own 100 app ports, away from Keter's default
// ranges: another keter on the host (a test run next to ours) hands out
// the same ports, and one of its apps (or, before the port map matched
// only nginx's cgroup, its DNAT map) answered our readiness probe for an
// app that had not bound yet.
func ownPorts() string {
	from := 10000 + 100*rand.IntN(99)
	return fmt.Sprintf("port-manager:\n  reserve: false\n  ranges:\n    - {from: %d, to: %d}\n", from, from+99)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRuntimesDefaultSettings deploys a web app for each runtime Debian
// ships (Node.js, Java, Python, PHP, a GHC-compiled Warp binary) with a
// bundle that sets nothing but exec, args and host: each must go live and
// answer through nginx under the default sandbox.
func TestRuntimesDefaultSettings(t *testing.T) {
	k := startKeter(t, ownPorts())
	apps := langApps()
	hosts := map[string]string{}
	for _, a := range apps {
		hosts[a.name] = a.name + "-" + testkit.Token() + ".test"
		src := filepath.Join(k.Root, a.name+".src")
		a.bundle(t, src, hosts[a.name])
		k.Drop(src, a.name+".keter") // all at once: keter deploys apps in parallel
	}
	for _, a := range apps {
		t.Run(a.name, func(t *testing.T) {
			k.waitServes(t, a.name, hosts[a.name], a.want, 3*time.Minute)
			if a.notLogged == "" {
				return
			}
			log, _ := mustCLI(t, 0, "logs", a.name)
			if strings.Contains(log, a.notLogged) {
				t.Errorf("%s serves, but logged %q:\n%s", a.name, a.notLogged, log)
			}
		})
	}
}

// waitServes polls until host answers 200 with body through nginx; on
// timeout it fails with keter's own account of the app.
func (k *keter) waitServes(t *testing.T, app, host, body string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		code, got, err := k.Get(host, "/")
		if err == nil && code == 200 && got == body {
			return
		}
		last = fmt.Sprintf("%d %q %v", code, got, err)
		time.Sleep(100 * time.Millisecond)
	}
	out, errOut, _ := cli(t, "status", "-c", k.config(), app)
	t.Fatalf("%s does not serve %q after %s (last: %s); keter status %s:\n%s%s", host, body, within, last, app, out, errOut)
}
