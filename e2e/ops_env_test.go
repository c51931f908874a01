package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit"
)

// opsBundle writes app "ops": behaveapp (version v) for ops.test, which
// the strict client drives, and the demo app for env.test, which shows
// its environment and PID.
func opsBundle(t *testing.T, k *keter, v string) string {
	t.Helper()
	behave, err := os.ReadFile(testkit.BehaveApp(t))
	if err != nil {
		t.Fatal(err)
	}
	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(k.Root, "src", v, "ops.keter")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("stanzas:\n" +
			"  - type: webapp\n    exec: ../bin/behaveapp\n    args: [--version, " + v + "]\n    host: ops.test\n" +
			"  - type: webapp\n    exec: ../bin/demoapp\n    args: [--message, " + v + "]\n    host: env.test\n")},
		"bin/behaveapp": {Body: behave, Mode: 0o755},
		"bin/demoapp":   {Body: demo, Mode: 0o755},
	})
	return path
}

// envOf waits until a fresh request to the demo app sees name as want
// ("" for unset), and returns the PID that answered.
func envOf(t *testing.T, k *keter, name, want string) string {
	t.Helper()
	var pid string
	eventually(t, 30*time.Second, func() error {
		code, got, err := k.Get("env.test", "/env/"+name)
		if err != nil {
			return err
		}
		if want == "" && code != 404 || want != "" && (code != 200 || got != want) {
			return fmt.Errorf("%s: got %d %q, want %q", name, code, got, want)
		}
		_, pid, err = k.Get("env.test", "/pid")
		return err
	})
	return pid
}

// TestOperatorEnvAndRestart: keter env set replaces the live version under
// a strict keep-alive load (GET and POST) with no failed request and the
// app sees the value; a secret shows nowhere but in the app; the layer
// survives a deploy, a rollback and a keter restart; --no-restart leaves
// the running process alone; PORT is refused; keter restart gives a new
// process with no failed request.
func TestOperatorEnvAndRestart(t *testing.T) {
	k, sp := startZeroKeter(t)
	cfg := k.config()
	mustCLI(t, 0, "deploy", "-c", cfg, opsBundle(t, k, "v1"))
	pid0 := envOf(t, k, "GREETING", "")

	load, err := loadgen.Start(context.Background(), loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.Port), Host: "ops.test", WorkersPer: 2,
		Behaviours: []loadgen.Behaviour{loadgen.One, loadgen.Split}, Pause: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	settle()

	// Set: a replacement under load; the value may hold '='.
	out, _ := mustCLI(t, 0, "env", "set", "-c", cfg, "ops", "GREETING=hello=world", "MODE=blue")
	if !strings.Contains(out, "is live") {
		t.Errorf("env set printed %q", out)
	}
	pid1 := envOf(t, k, "GREETING", "hello=world")
	if pid1 == pid0 {
		t.Errorf("PID %s after env set: not replaced", pid1)
	}
	const secret = "s3cr3t-Zq9xK7"
	mustCLI(t, 0, "env", "set", "-c", cfg, "ops", "API_TOKEN="+secret, "--secret")
	pid2 := envOf(t, k, "API_TOKEN", secret)

	// Refused, with what to fix: nothing changes.
	for _, bad := range []string{"PORT=80", "APPROOT=http://x"} {
		_, errOut := mustCLI(t, 1, "env", "set", "-c", cfg, "ops", bad)
		if name, _, _ := strings.Cut(bad, "="); !strings.Contains(errOut, name) || !strings.Contains(errOut, "cannot be overridden") {
			t.Errorf("env set %s: %q", bad, errOut)
		}
	}
	list, _ := mustCLI(t, 0, "env", "-c", cfg, "ops")
	if want := "API_TOKEN=***\nGREETING=hello=world\nMODE=blue\n"; list != want {
		t.Errorf("keter env ops = %q, want %q", list, want)
	}

	// --no-restart: stored, the running process untouched.
	mustCLI(t, 0, "env", "set", "-c", cfg, "--no-restart", "ops", "LATER=1")
	time.Sleep(1500 * time.Millisecond)
	if pid := envOf(t, k, "LATER", ""); pid != pid2 {
		t.Errorf("PID %s after env set --no-restart, was %s", pid, pid2)
	}
	mustCLI(t, 0, "env", "unset", "-c", cfg, "--no-restart", "ops", "MODE")
	_, errOut := mustCLI(t, 1, "env", "unset", "-c", cfg, "--no-restart", "ops", "NOPE")
	if !strings.Contains(errOut, "NOPE") {
		t.Errorf("unset of a missing variable: %q", errOut)
	}

	// The next deploy gets them; the layer is the app's: a rollback keeps it.
	mustCLI(t, 0, "deploy", "-c", cfg, opsBundle(t, k, "v2"))
	envOf(t, k, "LATER", "1")
	envOf(t, k, "MODE", "")
	mustCLI(t, 0, "rollback", "-c", cfg, "ops")
	k.WaitBody("env.test", "v1", 30*time.Second)
	envOf(t, k, "GREETING", "hello=world")
	envOf(t, k, "API_TOKEN", secret)

	// keter restart APP: a new process, the same bundle.
	before := statusOf(t, k).app("ops").Live
	out, _ = mustCLI(t, 0, "restart", "-c", cfg, "ops")
	after := statusOf(t, k).app("ops").Live
	if !strings.Contains(out, "ops: version "+after.Version+" is live") || after.Version == before.Version || after.Digest != before.Digest {
		t.Errorf("restart: printed %q; live %+v, was %+v (want a new version of the same bundle)", out, after, before)
	}
	// Stable across more than nginx's time bound on kept upstream
	// connections (500 ms), which may still reach the replaced process
	// just after the switch.
	pidR := envOf(t, k, "API_TOKEN", secret)
	eventually(t, 10*time.Second, func() error {
		time.Sleep(time.Second)
		pid := envOf(t, k, "API_TOKEN", secret)
		if pid == pidR {
			return nil
		}
		pidR = pid
		return fmt.Errorf("PID still changing")
	})

	// Across a keter restart the layer stays, and the app keeps running.
	k.restart()
	if pid := envOf(t, k, "API_TOKEN", secret); pid != pidR {
		t.Errorf("PID %s after a keter restart, was %s", pid, pidR)
	}
	mustCLI(t, 0, "restart", "-c", cfg, "ops")
	envOf(t, k, "GREETING", "hello=world")

	settle()
	res := load.Stop()
	t.Logf("load:\n%s", res)
	if res.Failed() != 0 {
		t.Errorf("%d requests failed across env set, deploy, rollback and restarts", res.Failed())
	}
	for _, b := range []loadgen.Behaviour{loadgen.One, loadgen.Split} {
		if c := res.PerBehaviour[b]; c == nil || c.OK == 0 {
			t.Errorf("%s: nothing answered", b)
		}
	}

	// keter logs --since: a Go duration, or journalctl's own syntax.
	if out, _ := mustCLI(t, 0, "logs", "-c", cfg, "--since", "10m", "-o", "cat", "ops"); !strings.Contains(out, "demoapp starting") {
		t.Errorf("keter logs --since 10m: no app line in %q", out)
	}
	if out, _ := mustCLI(t, 0, "logs", "-c", cfg, "--since", "2099-01-01 00:00", "-o", "cat", "ops"); strings.Contains(out, "demoapp starting") {
		t.Errorf("keter logs --since 2099: lines from before it: %q", out)
	}

	// The secret is in the app's environment and in root-only files only.
	where := map[string]string{
		"keter's log":         k.Log(),
		"the apps' journal":   run2(t, "journalctl", "--no-pager", "-o", "verbose", "KETER_APP=ops"),
		"keter status --json": func() string { o, _ := mustCLI(t, 0, "status", "-c", cfg, "--json", "ops"); return o }(),
		"/metrics":            httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", sp)),
		"the status page":     httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", sp)),
		"/api/apps":           httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/apps?log=50", sp)),
		"keter env":           func() string { o, _ := mustCLI(t, 0, "env", "-c", cfg, "ops"); return o }(),
	}
	units := activeAppUnits(t)
	if len(units) == 0 {
		t.Fatal("no app units")
	}
	for _, u := range units {
		where["systemctl show "+u] = run(t, "systemctl", "show", u)
		where["systemctl cat "+u] = run2(t, "systemctl", "cat", u)
	}
	for what, text := range where {
		if strings.Contains(text, secret) {
			t.Errorf("the secret shows in %s", what)
		}
	}
	for _, p := range []string{filepath.Join(k.Root, "etc", "operator-env", "ops.json")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", p, err)
		}
	}
}

// run2 is run that tolerates a failing command (journalctl with no match).
func run2(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, _ := exec.Command(name, args...).CombinedOutput()
	return string(out)
}
