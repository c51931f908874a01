package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// unitDir is where the running systemd reads unit files: the sandbox sets
// SYSTEMD_UNIT_PATH for its PID 1; a real one reads /run/systemd/system.
func unitDir(t *testing.T) string {
	t.Helper()
	env, err := os.ReadFile("/proc/1/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), "SYSTEMD_UNIT_PATH="); ok {
			return strings.Split(v, ":")[0]
		}
	}
	return "/run/systemd/system"
}

// TestServiceReadyAfterFirstReconcile installs packaging/keter.service
// (only ExecStart adapted to the test root) into the sandbox systemd and
// checks the service contract: `systemctl start` returns once keter is
// ready, its socket answers and a bundle dropped before the start is
// already known; reload keeps it running; stopping it leaves the apps
// serving.
func TestServiceReadyAfterFirstReconcile(t *testing.T) {
	testkit.NeedSystemd(t)
	nginxBin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	tok := testkit.Token()
	k := &keter{t: t, Root: testkit.Root(t), Port: testkit.FreePort(t), Unit: "keter-e2e-svc-" + tok + ".service", Table: "kt_" + tok}
	cfg := fmt.Sprintf("root: %s\nlisteners:\n  - host: 127.0.0.1\n    port: %d\ngraceful-drain-micros: 1000000\nnginx:\n  mode: managed\n  binary: %s\n  nft-table: %s\nstatus:\n  listen: 127.0.0.1:%d\n",
		k.Root, k.Port, nginxBin, k.Table, testkit.FreePort(t))
	if err := os.WriteFile(k.config(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	host := "svc-" + testkit.Token() + ".test"
	os.MkdirAll(filepath.Join(k.Root, "incoming"), 0o755)
	testkit.DemoBundle(t, filepath.Join(k.Root, "early.keter"), host, "--message", "early")
	k.Drop(filepath.Join(k.Root, "early.keter"), "early.keter")

	unit, err := os.ReadFile(filepath.Join("..", "packaging", "keter.service"))
	if err != nil {
		t.Fatal(err)
	}
	const packaged = "ExecStart=/usr/bin/keter /etc/keter/keter-config.yaml"
	if !bytes.Contains(unit, []byte(packaged)) {
		t.Fatalf("packaging/keter.service has no %q line to adapt:\n%s", packaged, unit)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "KillMode=process", "ExecReload="} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("packaging/keter.service lacks %s", want)
		}
	}
	unit = bytes.Replace(unit, []byte(packaged), []byte("ExecStart="+keterBinary(t)+" run "+k.config()), 1)
	unitPath := filepath.Join(unitDir(t), k.Unit)
	if err := os.WriteFile(unitPath, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(unitPath)
		exec.Command("systemctl", "daemon-reload").Run()
	})
	t.Cleanup(k.cleanup)
	run(t, "systemctl", "daemon-reload")

	run(t, "systemctl", "start", k.Unit) // Type=notify: returns after READY=1
	if st := unitProp(t, k.Unit, "ActiveState") + "/" + unitProp(t, k.Unit, "SubState"); st != "active/running" {
		t.Fatalf("keter.service is %s right after start returned", st)
	}
	s := statusOf(t, k) // fails unless the socket answers
	if s.Keter.State != "ready" {
		t.Fatalf("keter says %q right after start returned, want ready", s.Keter.State)
	}
	if a := s.app("early"); a == nil || (a.State != "queued" && a.State != "deploying" && a.State != "live") {
		t.Fatalf("the bundle dropped before start is not being handled: %+v", a)
	}
	// Root's, and the deploy group's when the host has one (the package
	// makes it).
	wantMode, wantGID := os.FileMode(0o600), uint32(0)
	if g, err := user.LookupGroup("keter"); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		wantMode, wantGID = 0o660, uint32(gid)
	}
	if fi, err := os.Stat(filepath.Join(k.Root, "etc", "keter.sock")); err != nil || fi.Mode().Perm() != wantMode || fi.Sys().(*syscall.Stat_t).Gid != wantGID {
		t.Fatalf("status socket: %v, mode %v, want %v for group %d", err, fi.Mode().Perm(), wantMode, wantGID)
	}
	k.WaitBody(host, "early", 60*time.Second)

	// RELOADING=1 … READY=1 around the rescan: reload returns, still running.
	run(t, "systemctl", "reload", k.Unit)
	if st := unitProp(t, k.Unit, "ActiveState"); st != "active" {
		t.Fatalf("keter.service is %s after reload", st)
	}
	pidBefore := unitProp(t, k.Unit, "MainPID")

	// Stopping keter does not stop the apps: they are their own units.
	run(t, "systemctl", "stop", k.Unit)
	if st := unitProp(t, k.Unit, "ActiveState"); st != "inactive" {
		t.Fatalf("keter.service is %s after stop (main PID was %s)", st, pidBefore)
	}
	if u := activeAppUnits(t); len(u) != 1 {
		t.Fatalf("app units after stopping keter: %v, want the app still running", u)
	}
	k.WaitBody(host, "early", 10*time.Second)
	if _, err := os.Stat(filepath.Join(k.Root, "etc", "keter.sock")); !os.IsNotExist(err) {
		t.Errorf("status socket left behind after stop: %v", err)
	}
	if _, errOut, code := cli(t, "status", "-c", k.config()); code != 1 || !strings.Contains(errOut, "not running") {
		t.Errorf("keter status with keter stopped: exit %d, %s", code, errOut)
	}
}
