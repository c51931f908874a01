package dbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// app is one deployed test version: a bundle folder under the test root
// holding the demo app, and the env folder keter would own, laid out as
// keter lays out its root.
type app struct {
	name, root, dir, envDir string
}

func newApp(t *testing.T) app {
	t.Helper()
	return newAppIn(t, testkit.Root(t))
}

// newAppIn makes another app under the same keter root.
func newAppIn(t *testing.T, root string) app {
	t.Helper()
	name := "t" + testkit.Token()
	a := app{name: name, root: root, dir: filepath.Join(root, "temp", name+"-1"), envDir: filepath.Join(root, "etc", "env")}
	hooks := (&config.Config{Root: root}).Hooks()
	for _, d := range []string{filepath.Join(root, "temp"), hooks} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(hooks, unitgen.OwnFolderFile), []byte(unitgen.OwnFolderScript), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(a.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "bin", "demoapp"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.envDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return a
}

func newClient(t *testing.T) *Client {
	t.Helper()
	testkit.NeedSystemd(t)
	c, err := New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// start builds and starts a unit the way the core does: env file first.
func start(t *testing.T, c *Client, in unitgen.Input) (unitgen.Unit, error) {
	t.Helper()
	u, err := unitgen.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if u.EnvFile != "" {
		if err := os.WriteFile(u.EnvFile, u.Secrets, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if u.Launcher != "" {
		if err := os.WriteFile(u.Launcher, u.LauncherScript, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := c.Stop(ctx, u.Name); err != nil {
			t.Errorf("stopping %s: %v", u.Name, err)
		}
		_ = c.ResetFailed(ctx, u.Name)
	})
	return u, c.Start(t.Context(), u)
}

// startDemo starts the demo app as a plain webapp unit on a free port.
func startDemo(t *testing.T, c *Client) (unitgen.Unit, int) {
	t.Helper()
	a := newApp(t)
	port := testkit.FreePort(t)
	u, err := start(t, c, webInput(a, port, nil))
	if err != nil {
		t.Fatal(err)
	}
	return u, port
}

func webInput(a app, port int, mut func(*bundle.WebApp), args ...string) unitgen.Input {
	w := &bundle.WebApp{Exec: bundle.Exec{Path: "bin/demoapp", Args: args}, Hosts: []string{a.name + ".example"}}
	if mut != nil {
		mut(w)
	}
	return unitgen.Input{App: a.name, Version: "1", Index: 0, Stanza: bundle.Stanza{Type: bundle.TypeWebApp, WebApp: w},
		Dir: a.dir, Port: port, Global: &config.Config{Root: a.root, ExternalHTTPPort: 80, ExternalHTTPSPort: 443},
		LookupEnv: os.LookupEnv, EnvDir: a.envDir}
}

func bgInput(a app, index, count int, args ...string) unitgen.Input {
	return unitgen.Input{App: a.name, Version: "1", Index: index, Dir: a.dir, EnvDir: a.envDir, Global: &config.Config{Root: a.root},
		Stanza: bundle.Stanza{Type: bundle.TypeBackground, Background: &bundle.Background{
			Exec: bundle.Exec{Path: "bin/demoapp", Args: args}, RestartCount: count, RestartDelaySeconds: 0}}}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

func get(port int, path string) (string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

func waitHTTP(t *testing.T, port int, path string) string {
	t.Helper()
	var body string
	eventually(t, fmt.Sprintf("GET %s on port %d", path, port), func() (bool, string) {
		var err error
		body, err = get(port, path)
		return err == nil, fmt.Sprint(err)
	})
	return body
}

func status(t *testing.T, c *Client, name string) unitgen.Status {
	t.Helper()
	list, err := c.List(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Name == name {
			return s
		}
	}
	return unitgen.Status{Name: name, ActiveState: "gone"}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+\.[0-9]+)`)

const secret = `s3cr3t "quoted" $HOME \back` + "`tick`"

func TestWebAppHardenedServesAndKeepsSecrets(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	port := testkit.FreePort(t)
	in := webInput(a, port, func(w *bundle.WebApp) {
		w.Env = map[string]string{"KETER_TEST_SECRET": secret}
		w.PortEnvVars = []string{"YESOD_PORT"}
	}, "-message", "hello $PORT 100%")
	u, err := start(t, c, in)
	if err != nil {
		t.Fatal(err)
	}

	if got := waitHTTP(t, port, "/"); got != "hello $PORT 100%\n" {
		t.Errorf("GET / = %q; arguments must reach the app unexpanded", got)
	}
	if got := waitHTTP(t, port, "/env/KETER_TEST_SECRET"); got != secret {
		t.Errorf("app reads secret %q, want %q", got, secret)
	}
	if got := waitHTTP(t, port, "/env/YESOD_PORT"); got != strconv.Itoa(port) {
		t.Errorf("YESOD_PORT = %q, want %d", got, port)
	}
	if got := waitHTTP(t, port, "/env/APPROOT"); got != "http://"+a.name+".example" {
		t.Errorf("APPROOT = %q", got)
	}
	// Its own version folder is writable (as under the Haskell Keter), the
	// system is not.
	if _, err := get(port, "/write?path="+filepath.Join(a.dir, "x")); err != nil {
		t.Errorf("the app cannot write into its own version folder: %v", err)
	}
	for _, p := range []string{"/usr/local/x", "/etc/x", filepath.Join(a.root, "x")} {
		if _, err := get(port, "/write?path="+p); err == nil {
			t.Errorf("the app could write %s", p)
		}
	}
	if _, err := get(port, "/write?path=/var/lib/keter-app-"+a.name+"/x"); err != nil {
		t.Errorf("the app cannot write its StateDirectory: %v", err)
	}

	t.Run("security exposure", func(t *testing.T) {
		out := run(t, "systemd-analyze", "security", "--no-pager", u.Name)
		m := exposureRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		exp, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("systemd-analyze security %s: exposure %.1f", u.Name, exp)
		if exp > 2.0 {
			t.Errorf("exposure %.1f > 2.0:\n%s", exp, out)
		}
	})

	t.Run("secret hidden from unprivileged users", func(t *testing.T) {
		ensureSystemBus(t)
		cmd := exec.CommandContext(t.Context(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"systemctl", "show", "--no-pager", u.Name)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("systemctl show as nobody: %v\n%s", err, out)
		}
		// The test can fail: nobody does see the public variables.
		if !strings.Contains(string(out), "PORT="+strconv.Itoa(port)) {
			t.Fatalf("nobody's systemctl show lacks PORT, so it proves nothing:\n%s", out)
		}
		if strings.Contains(string(out), "s3cr3t") {
			t.Errorf("secret visible to nobody through systemctl show:\n%s", out)
		}
		transient, err := os.ReadFile("/run/systemd/transient/" + u.Name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(transient), "s3cr3t") {
			t.Errorf("secret in the world-readable transient unit file")
		}
		cat := exec.CommandContext(t.Context(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", u.EnvFile)
		if out, err := cat.CombinedOutput(); err == nil || strings.Contains(string(out), "s3cr3t") {
			t.Errorf("nobody can read the env file: %v %s", err, out)
		}
	})

	t.Run("journal", func(t *testing.T) {
		want := "demoapp listening on port " + strconv.Itoa(port)
		for _, args := range [][]string{
			{"-u", "keter-app-*"},
			{"KETER_APP=" + a.name},
			{"KETER_APP=" + a.name, "KETER_VERSION=1", "KETER_STANZA=web0"},
		} {
			eventually(t, "journalctl "+strings.Join(args, " "), func() (bool, string) {
				out, err := exec.Command("journalctl", append([]string{"--no-pager", "-o", "cat"}, args...)...).CombinedOutput()
				return err == nil && strings.Contains(string(out), want), string(out)
			})
		}
		lines, err := c.Journal(t.Context(), u.Name, 50)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(lines, "\n"), want) {
			t.Errorf("Journal(%s) lacks %q: %q", u.Name, want, lines)
		}
	})

	t.Run("list from a fresh client", func(t *testing.T) {
		c2 := newClient(t)
		list, err := c2.List(t.Context(), unitgen.AppPrefix(a.name))
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			t.Fatalf("List = %+v, want one unit", list)
		}
		s := list[0]
		if s.Name != u.Name || s.Meta != (unitgen.Meta{App: a.name, Version: "1", Stanza: "web0"}) ||
			s.ActiveState != "active" || s.SubState != "running" || s.MainPID == 0 {
			t.Errorf("List = %+v", s)
		}
		if st, err := c2.ActiveState(t.Context(), u.Name); err != nil || st != "active" {
			t.Errorf("ActiveState = %q, %v", st, err)
		}
	})
}

// ensureSystemBus starts a D-Bus system bus in the sandbox so unprivileged
// clients can ask systemd what anyone may see. On a real host it is there.
func ensureSystemBus(t *testing.T) {
	t.Helper()
	busOnce.Do(func() { busErr = startSystemBus() })
	if busErr != nil {
		testkit.Missing(t, "no D-Bus system bus for unprivileged systemctl: %v", busErr)
	}
}

var (
	busOnce sync.Once
	busErr  error
)

func startSystemBus() error {
	if exec.Command("systemctl", "is-active", "--quiet", "dbus.service").Run() == nil {
		return nil
	}
	sbx := os.Getenv("KETER_SANDBOX")
	if sbx == "" {
		return errors.New("dbus.service is not running and this is not the test sandbox")
	}
	for _, f := range []string{"dbus.socket", "dbus.service"} {
		b, err := os.ReadFile("/lib/systemd/system/" + f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sbx, "units", f), b, 0o644); err != nil {
			return err
		}
	}
	// No daemon-reload: SYSTEMD_UNIT_PATH leaves /run/systemd/transient out
	// of the sandbox's search path, so a reload strips every running
	// transient unit of its properties. systemd notices new unit files by
	// itself when a unit is first referenced.
	if out, err := exec.Command("systemctl", "start", "dbus.socket", "dbus.service").CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl start dbus.socket dbus.service: %v: %s", err, out)
	}
	return nil
}

func TestSIGKILLedAppIsRestarted(t *testing.T) {
	c := newClient(t)
	u, port := startDemo(t, c)
	pid, err := strconv.Atoi(waitHTTP(t, port, "/pid"))
	if err != nil {
		t.Fatal(err)
	}
	if s := status(t, c, u.Name); s.MainPID != uint32(pid) {
		t.Fatalf("MainPID = %d, app says %d", s.MainPID, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new process serving", func() (bool, string) {
		body, err := get(port, "/pid")
		return err == nil && body != strconv.Itoa(pid), fmt.Sprint(body, err)
	})
	s := status(t, c, u.Name)
	if s.NRestarts < 1 || s.MainPID == uint32(pid) || s.ActiveState != "active" {
		t.Errorf("after SIGKILL: %+v", s)
	}
	if h, found, err := c.Health(t.Context(), u.Name); err != nil || !found || h.NRestarts != s.NRestarts || h.MainPID != s.MainPID || h.ActiveState != "active" {
		t.Errorf("Health after SIGKILL: %+v %v %v; Status %+v", h, found, err, s)
	}
}

func TestCrashLoopEndsFailed(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	in := webInput(a, testkit.FreePort(t), nil, "-exit", "1")
	name, err := unitgen.UnitName(a.name, "1", "web0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := c.Subscribe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start(t, c, in); err != nil {
		t.Fatal(err)
	}
	var seen []string
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case s, ok := <-events:
			if !ok {
				t.Fatal("subscription closed")
			}
			seen = append(seen, fmt.Sprintf("%s/%s/%s/%d", s.ActiveState, s.SubState, s.Result, s.NRestarts))
			if s.Meta.App != a.name {
				t.Errorf("event Meta = %+v", s.Meta)
			}
			if s.ActiveState == "failed" {
				// systemd 252 keeps the last exit's result; the journal
				// says why it gave up.
				if s.Result != "exit-code" && s.Result != "start-limit-hit" {
					t.Errorf("failed with result %q", s.Result)
				}
				// systemd counts the restart it scheduled and then refused.
				if s.NRestarts != unitgen.WebStartLimitBurst {
					t.Errorf("failed after %d restarts, want %d", s.NRestarts, unitgen.WebStartLimitBurst)
				}
				break wait
			}
		case <-deadline:
			t.Fatalf("no failed state; saw %v", seen)
		}
	}
	t.Logf("states: %v", seen)
	starts := func() int {
		lines, _ := c.Journal(t.Context(), name, 1000)
		return strings.Count(strings.Join(lines, "\n"), "demoapp exiting with 1")
	}
	eventually(t, "5 starts in the journal", func() (bool, string) { n := starts(); return n == unitgen.WebStartLimitBurst, strconv.Itoa(n) })
	time.Sleep(3 * time.Second) // long enough for restarts to show, were it still spinning
	if n := starts(); n != unitgen.WebStartLimitBurst {
		t.Errorf("%d starts after failing, want %d", n, unitgen.WebStartLimitBurst)
	}
	if st, _ := c.ActiveState(t.Context(), name); st == "active" || st == "activating" {
		t.Errorf("unit is %s after failing", st)
	}
	lines, err := c.Journal(t.Context(), name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "Start request repeated too quickly") {
		t.Errorf("journal does not show the start limit:\n%s", strings.Join(lines, "\n"))
	}
}

func TestBackgroundRestartSettings(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	limited, err := start(t, c, bgInput(a, 1, 2, "-exit", "0"))
	if err != nil {
		t.Fatal(err)
	}
	unlimited, err := start(t, c, bgInput(a, 2, -1, "-exit", "3"))
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string) int {
		lines, _ := c.Journal(t.Context(), name, 1000)
		return strings.Count(strings.Join(lines, "\n"), "demoapp starting")
	}
	eventually(t, "restart-count 2 to run 3 times", func() (bool, string) {
		n := count(limited.Name)
		return n == 3, strconv.Itoa(n)
	})
	eventually(t, "unlimited to pass 10 runs", func() (bool, string) {
		n := count(unlimited.Name)
		return n > 10, strconv.Itoa(n)
	})
	if n := count(limited.Name); n != 3 {
		t.Errorf("restart-count 2 ran %d times, want 3", n)
	}
	if st, _ := c.ActiveState(t.Context(), limited.Name); st == "active" || st == "activating" {
		t.Errorf("restart-count 2 unit still %s", st)
	}
	if s := status(t, c, unlimited.Name); s.ActiveState == "failed" || s.ActiveState == "gone" {
		t.Errorf("unlimited unit stopped: %+v", s)
	}
}

func TestStartMissingBinaryNamesUnit(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	in := webInput(a, testkit.FreePort(t), func(w *bundle.WebApp) { w.Path = "bin/no-such-binary" })
	u, err := start(t, c, in)
	if err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
	if !errors.Is(err, ErrJob) || !strings.Contains(err.Error(), u.Name) || !strings.Contains(err.Error(), `"failed"`) {
		t.Errorf("error = %v; want ErrJob naming %s and result \"failed\"", err, u.Name)
	}
	// The reason is in the unit's journal, which the caller reads (it is
	// the app's log, not the error's text).
	if strings.Contains(err.Error(), "No such file") {
		t.Errorf("error quotes the unit's journal: %v", err)
	}
	eventually(t, "the missing binary in the journal", func() (bool, string) {
		lines, _ := c.Journal(t.Context(), u.Name, 20)
		j := strings.Join(lines, "\n")
		return strings.Contains(j, "no-such-binary: No such file or directory"), j
	})
	t.Logf("error: %v", err)
}

func TestReloadStopAndReset(t *testing.T) {
	c := newClient(t)
	name := "keter-test-reload-" + testkit.Token() + ".service"
	marker := filepath.Join(testkit.Root(t), "reloaded")
	props := []sddbus.Property{
		sddbus.PropExecStart([]string{"/bin/sleep", "600"}, false),
		{Name: "ExecReload", Value: sddbus.PropExecStart([]string{"/bin/touch", marker}, false).Value},
	}
	if err := c.StartTransient(t.Context(), name, props); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background(), name) })
	if err := c.Reload(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("ExecReload did not run: %v", err)
	}
	if err := c.Stop(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	if st, err := c.ActiveState(t.Context(), name); err != nil || st != "inactive" {
		t.Errorf("after Stop: %q, %v", st, err)
	}
	if err := c.Stop(t.Context(), name); err != nil {
		t.Errorf("stopping a unit that is gone: %v", err)
	}
	if err := c.ResetFailed(t.Context(), name); err != nil {
		t.Errorf("resetting a unit that is gone: %v", err)
	}
	if err := c.Reload(t.Context(), name); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("reloading a stopped unit: %v", err)
	}
}

func TestReconnectsAfterDrop(t *testing.T) {
	c := newClient(t)
	c.mu.Lock()
	c.conn.Close() // what systemd re-executing does to our socket
	c.mu.Unlock()
	if _, err := c.ActiveState(t.Context(), "keter-test-none.service"); err != nil {
		t.Fatalf("after the bus dropped: %v", err)
	}
	name := "keter-test-reconnect-" + testkit.Token() + ".service"
	c.mu.Lock()
	c.conn.Close()
	c.mu.Unlock()
	if err := c.StartTransient(t.Context(), name, []sddbus.Property{sddbus.PropExecStart([]string{"/bin/sleep", "600"}, false)}); err != nil {
		t.Fatalf("starting after the bus dropped: %v", err)
	}
	if err := c.Stop(t.Context(), name); err != nil {
		t.Fatal(err)
	}
}

// TestExitStatusOfLastRun: List reports how the main process ended, an
// exit status or a signal, which is what keter's deploy error goes by.
func TestExitStatusOfLastRun(t *testing.T) {
	c := newClient(t)
	for _, tt := range []struct {
		name       string
		script     string
		codes      []int32 // acceptable ExecMainCode values
		wantStatus int32
	}{
		{"exit status", "exit 3", []int32{unitgen.CodeExited}, 3},
		// SIGTRAP dumps core where core dumps are allowed; systemd
		// expands "$$" in ExecStart to "$".
		{"signal", "kill -s TRAP $$$$", []int32{unitgen.CodeKilled, unitgen.CodeDumped}, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := "keter-test-exit-" + testkit.Token() + ".service"
			// Restart=no and the default CollectMode keep the failed unit loaded.
			if err := c.StartTransient(t.Context(), name, []sddbus.Property{sddbus.PropExecStart([]string{"/bin/sh", "-c", tt.script}, false)}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.ResetFailed(context.Background(), name) })
			var s unitgen.Status
			eventually(t, name+" failed", func() (bool, string) {
				s = status(t, c, name)
				return s.ActiveState == "failed", fmt.Sprintf("%+v", s)
			})
			if !slices.Contains(tt.codes, s.ExecMainCode) || s.ExecMainStatus != tt.wantStatus {
				t.Errorf("ExecMainCode/Status = %d/%d, want one of %v with %d", s.ExecMainCode, s.ExecMainStatus, tt.codes, tt.wantStatus)
			}
		})
	}
}

// TestStateByName: State and Status read one unit by name as List does, and finds
// no unit that is not loaded (nor one its name only prefixes).
func TestStateByName(t *testing.T) {
	c := newClient(t)
	name := "keter-test-state-" + testkit.Token() + ".service"
	if err := c.StartTransient(t.Context(), name, []sddbus.Property{sddbus.PropExecStart([]string{"/bin/sleep", "600"}, false)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background(), name) })
	st, found, err := c.State(t.Context(), name)
	if err != nil || !found {
		t.Fatalf("State(%s) = %v, %v", name, found, err)
	}
	listed, err := c.List(t.Context(), name)
	if err != nil || len(listed) != 1 {
		t.Fatalf("List(%s) = %v, %v", name, listed, err)
	}
	if st.Name != name || st.ActiveState != listed[0].ActiveState || st.SubState != listed[0].SubState || st.ActiveState != "active" {
		t.Errorf("State %+v, List %+v", st, listed[0])
	}
	full, found, err := c.Status(t.Context(), name)
	if err != nil || !found {
		t.Fatalf("Status(%s) = %v, %v", name, found, err)
	}
	want := listed[0]
	full.Usage, want.Usage = unitgen.Usage{}, unitgen.Usage{} // figures move
	if full != want || full.MainPID == 0 {
		t.Errorf("Status %+v, List %+v", full, listed[0])
	}
	// Health is Status without figures and exit status.
	health, found, err := c.Health(t.Context(), name)
	full.ExecMainCode, full.ExecMainStatus = 0, 0
	if err != nil || !found || health != full {
		t.Errorf("Health(%s) = %+v, %v, %v; Status %+v", name, health, found, err, full)
	}
	for _, missing := range []string{"keter-test-state-none-" + testkit.Token() + ".service", strings.TrimSuffix(name, ".service")} {
		if _, found, err := c.State(t.Context(), missing); err != nil || found {
			t.Errorf("State(%s) = found %v, %v; want not found", missing, found, err)
		}
		if _, found, err := c.Status(t.Context(), missing); err != nil || found {
			t.Errorf("Status(%s) = found %v, %v; want not found", missing, found, err)
		}
		if _, found, err := c.Health(t.Context(), missing); err != nil || found {
			t.Errorf("Health(%s) = found %v, %v; want not found", missing, found, err)
		}
	}
}

// TestSubscriptionsFollowAfterDrop: Subscribe and SubscribeStates share
// the client's one connection; when it drops (systemd re-executing) both
// redial and go on reporting units, and jobs still get their results.
func TestSubscriptionsFollowAfterDrop(t *testing.T) {
	c := newClient(t)
	prefix := "keter-test-subdrop-" + testkit.Token()
	full, err := c.Subscribe(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.SubscribeStates(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if round == 1 {
			c.mu.Lock()
			c.conn.Close()
			c.mu.Unlock()
		}
		name := fmt.Sprintf("%s-%d.service", prefix, round)
		if err := c.StartTransient(t.Context(), name, []sddbus.Property{sddbus.PropExecStart([]string{"/bin/sleep", "600"}, false)}); err != nil {
			t.Fatalf("round %d: starting: %v", round, err)
		}
		for kind, ch := range map[string]<-chan unitgen.Status{"Subscribe": full, "SubscribeStates": raw} {
			deadline := time.After(30 * time.Second)
			for seen := false; !seen; {
				select {
				case s, ok := <-ch:
					if !ok {
						t.Fatalf("round %d: %s ended", round, kind)
					}
					seen = s.Name == name && s.ActiveState == "active"
				case <-deadline:
					t.Fatalf("round %d: %s never reported %s active", round, kind, name)
				}
			}
		}
		if err := c.Stop(t.Context(), name); err != nil {
			t.Fatalf("round %d: stopping: %v", round, err)
		}
	}
}

// TestListensOwnsThePort: Listens accepts the unit's own listener among
// others, and tells a port held by a program outside the unit, and one
// nothing listens on, from it.
func TestListensOwnsThePort(t *testing.T) {
	c := newClient(t)
	u, port := startDemo(t, c)
	waitHTTP(t, port, "/")
	var others []net.Listener
	for range 3 { // listeners of other ports around it
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		others = append(others, l)
	}
	if err := c.Listens(t.Context(), u.Name, port); err != nil {
		t.Errorf("the unit's own port: %v", err)
	}
	foreign := others[0].Addr().(*net.TCPAddr).Port
	if err := c.Listens(t.Context(), u.Name, foreign); !errors.Is(err, ErrForeignListener) {
		t.Errorf("a port the test process holds: %v, want ErrForeignListener", err)
	}
	if err := c.Listens(t.Context(), u.Name, testkit.FreePort(t)); !errors.Is(err, ErrNotListening) {
		t.Errorf("a port no one holds: %v, want ErrNotListening", err)
	}
}
