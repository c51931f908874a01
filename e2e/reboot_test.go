package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

// nested is a systemd booted by scripts/sandbox.sh inside the test's own
// sandbox: a host this test may power off and boot again.
type nested struct {
	t   *testing.T
	dir string
}

func sandboxScript() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "scripts", "sandbox.sh")
}

func (n *nested) boot() {
	n.t.Helper()
	if out, err := exec.Command("bash", sandboxScript(), "up", n.dir).CombinedOutput(); err != nil {
		n.t.Fatalf("booting the nested systemd: %v\n%s", err, out)
	}
}

func (n *nested) exec(args ...string) (string, error) {
	out, err := exec.Command("bash", append([]string{sandboxScript(), "exec", n.dir}, args...)...).CombinedOutput()
	return string(out), err
}

// powerOff stops every unit of the nested host, then its systemd.
func (n *nested) powerOff() {
	n.t.Helper()
	out, _ := n.exec("systemctl", "list-units", "--all", "--plain", "--no-legend", "keter*")
	args := []string{"systemctl", "stop"}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			args = append(args, f[0])
		}
	}
	if out, err := n.exec(args...); err != nil {
		n.t.Fatalf("stopping the nested host's units: %v\n%s", err, out)
	}
	exec.Command("bash", sandboxScript(), "down", n.dir).Run()
}

// TestRebootRestartsAppsWithoutUnpacking: keter runs as an enabled unit
// file (packaging/keter.service) on a nested systemd with three apps, one
// of them large, and two asleep (idle-stop, one behind its proxy, one
// with socket-activation). The "host" is powered off (every unit stopped,
// then its systemd) and its nftables table deleted, as a real reboot
// loses it, and one app's version folder is tampered with. After the boot
// every app serves again; the intact folders were started as they were,
// the tampered one was unpacked again. The sleeping apps come back with
// only their sockets: their services are not started until a request
// comes, keter calls them sleeping, and 50 clients at once wake each with
// none failing.
func TestRebootRestartsAppsWithoutUnpacking(t *testing.T) {
	testkit.NeedSystemd(t)
	nginxBin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	testkit.NeedBinary(t, "nft", "apt-get install nftables")
	tok := testkit.Token()
	root := testkit.Root(t)
	port, table, statusPort := testkit.FreePort(t), "kt_"+tok, testkit.FreePort(t)
	from := 20000 + rand.IntN(40)*300
	cfgPath := filepath.Join(root, "keter-config.yaml")
	cfg := fmt.Sprintf("root: %s\nlisteners:\n  - host: 127.0.0.1\n    port: %d\nnginx:\n  mode: managed\n  binary: %s\n  nft-table: %s\n"+
		"port-manager:\n  reserve: false\n  ranges: [{from: %d, to: %d}]\nstatus:\n  listen: 127.0.0.1:%d\n", root, port, nginxBin, table, from, from+299, statusPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &keter{t: t, Root: root, Port: port}

	// The host: keter.service as packaged, enabled.
	n := &nested{t: t, dir: filepath.Join(root, "host")}
	unit, err := os.ReadFile(filepath.Join("..", "packaging", "keter.service"))
	if err != nil {
		t.Fatal(err)
	}
	const packaged = "ExecStart=/usr/bin/keter /etc/keter/keter-config.yaml"
	if !strings.Contains(string(unit), packaged) {
		t.Fatalf("packaging/keter.service has no line %q", packaged)
	}
	unit = []byte(strings.Replace(string(unit), packaged, "ExecStart="+keterBinary(t)+" run "+cfgPath, 1))
	wants := filepath.Join(n.dir, "units", "keter-test.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "units", "keter.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../keter.service", filepath.Join(wants, "keter.service")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := n.exec("journalctl", "--no-pager", "-o", "cat", "-u", "keter.service")
			t.Logf("keter log (this boot):\n%s", out)
			out, _ = n.exec("journalctl", "--no-pager", "-o", "short-precise", "-n", "100", "-u", "keter-nginx.service", "-u", "keter-app-*")
			t.Logf("nginx and app units (this boot):\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(n.dir, "pid")); err == nil {
			n.powerOff()
		}
		portmap.New(table).Remove(context.Background())
	})
	n.boot()
	if out, err := n.exec("systemctl", "is-active", "keter.service"); err != nil {
		t.Fatalf("keter.service not started at boot: %v %s", err, out)
	}

	apps := []struct{ name, host, msg string }{
		{"small", "small-" + tok + ".test", "small " + tok},
		{"tampered", "tampered-" + tok + ".test", "tampered " + tok},
		{"large", "large-" + tok + ".test", "large " + tok},
	}
	for _, a := range apps {
		src := filepath.Join(root, a.name+".src")
		if a.name == "large" {
			largeDemoBundle(t, src, a.host, a.msg)
		} else {
			testkit.DemoBundle(t, src, a.host, "--message", a.msg)
		}
		k.Drop(src, a.name+".keter")
	}
	sleepers := []struct{ name, host, yaml, mode string }{
		{"sleepproxy", "sleepproxy-" + tok + ".test", "idle-stop: 2s\n", "proxy"},
		{"sleepsock", "sleepsock-" + tok + ".test", "idle-stop: 2s\nsocket-activation: true\n", "socket-activation"},
	}
	for _, s := range sleepers {
		src := filepath.Join(root, s.name+".src")
		testkit.BehaveBundle(t, src, s.host, s.yaml, "--version", "v1")
		k.Drop(src, s.name+".keter")
	}
	for _, a := range apps {
		k.WaitBody(a.host, a.msg, 120*time.Second)
	}
	for _, s := range sleepers {
		k.WaitCode(s.host, 200, 120*time.Second)
		unit, socket := n.sleeperUnits(s.name, s.mode)
		n.waitAsleep(unit, socket)
	}
	dirs := versionDirs(t, root)
	if len(dirs) != len(apps)+len(sleepers) {
		t.Fatalf("version folders %v, want %d", dirs, len(apps)+len(sleepers))
	}
	stamps := map[string]time.Time{}
	for app, d := range dirs {
		fi, err := os.Stat(filepath.Join(d, "bin", binOf(app)))
		if err != nil {
			t.Fatal(err)
		}
		stamps[app] = fi.ModTime()
	}

	n.powerOff()
	if err := portmap.New(table).Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _, err := k.Get(apps[0].host, "/"); err == nil {
		t.Fatalf("the powered-off host still answers (%d)", code)
	}
	if err := os.WriteFile(filepath.Join(dirs["tampered"], "bin", "planted"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	n.boot()
	// The sleepers first: a request to any app could not wake them, but
	// keter must have put them back without a request of its own.
	for _, s := range sleepers {
		eventually(t, 120*time.Second, func() error {
			out, err := n.exec(keterBinary(t), "status", "-c", cfgPath, "--json")
			if err != nil {
				return fmt.Errorf("keter status: %v %s", err, out)
			}
			var st statusJSON
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return fmt.Errorf("keter status --json: %v", err)
			}
			if a := st.app(s.name); a == nil || a.State != "sleeping" {
				return fmt.Errorf("%s is not sleeping after the boot: %+v", s.name, a)
			}
			return nil
		})
		unit, socket := n.sleeperUnits(s.name, s.mode)
		// Never started in this boot, not started and then put to sleep.
		if st, since := n.prop(unit, "ActiveState"), n.prop(unit, "InactiveExitTimestampMonotonic"); st != "inactive" || since != "0" {
			t.Errorf("%s: %s was started after the boot (%s, left inactive at %s)", s.name, unit, st, since)
		}
		if st := n.prop(socket, "ActiveState"); st != "active" {
			t.Errorf("%s: its socket %s is %s after the boot", s.name, socket, st)
		}
	}
	if m := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", statusPort)); !strings.Contains(m, fmt.Sprintf(`keter_apps{state="sleeping"} %d`, len(sleepers))) {
		t.Errorf("metrics do not count the sleepers as sleeping after the boot:\n%s", grepLines(m, "keter_apps"))
	}
	// The other apps serving and nginx's reloads for them over before the
	// bursts: a reload closes idle kept client connections, and a client
	// that sends on one as it closes gets nothing (any keep-alive client,
	// of any app: keter reloads only for apps new to nginx, as here).
	for _, a := range apps {
		k.WaitBody(a.host, a.msg, 120*time.Second)
	}
	reloadsOver(t, statusPort)
	for _, s := range sleepers {
		burst(t, k, s.host, s.name+": waking after the reboot")
	}
	log, _ := n.exec("journalctl", "--no-pager", "-o", "cat", "-u", "keter.service")
	after := versionDirs(t, root)
	for _, app := range []string{"small", "large", "sleepproxy", "sleepsock"} {
		if after[app] != dirs[app] {
			t.Errorf("%s: served from %s after the reboot, want its kept folder %s", app, after[app], dirs[app])
		}
		fi, err := os.Stat(filepath.Join(after[app], "bin", binOf(app)))
		if err != nil || !fi.ModTime().Equal(stamps[app]) {
			t.Errorf("%s: the app binary was written again (%v, mtime %v, before %v)", app, err, fi.ModTime(), stamps[app])
		}
		if !strings.Contains(log, `msg="version folder intact: starting it without unpacking" app=`+app+" ") {
			t.Errorf("%s: keter did not log that it started the kept folder", app)
		}
	}
	if after["tampered"] == dirs["tampered"] {
		t.Errorf("tampered: still served from the folder that changed, %s", dirs["tampered"])
	}
	if _, err := os.Stat(dirs["tampered"]); !os.IsNotExist(err) {
		t.Errorf("tampered: the changed folder is still there (%v)", err)
	}
	if !strings.Contains(log, `msg="version folder changed since it was unpacked: unpacking its bundle again" app=tampered `) {
		t.Error("tampered: keter did not log that it unpacked it again")
	}
	if t.Failed() {
		t.Logf("keter log (after the reboot):\n%s", log)
	}
}

// binOf is the app binary in the bundle of the reboot test's app.
func binOf(app string) string {
	if strings.HasPrefix(app, "sleep") {
		return "behaveapp"
	}
	return "demoapp"
}

// prop is a property of a unit of the nested host.
func (n *nested) prop(unit, prop string) string {
	n.t.Helper()
	out, err := n.exec("systemctl", "show", "--value", "-p", prop, unit)
	if err != nil {
		n.t.Fatalf("systemctl show %s: %v\n%s", unit, err, out)
	}
	return strings.TrimSpace(out)
}

// sleeperUnits finds app's listening socket on the nested host and the
// service it wakes (see the package's sleeperUnits).
func (n *nested) sleeperUnits(app, mode string) (unit, socket string) {
	n.t.Helper()
	out, err := n.exec("systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-"+app+"-*.socket")
	if err != nil {
		n.t.Fatalf("listing sockets: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "active" {
			socket = f[0]
		}
	}
	head, _, ok := strings.Cut(socket, "-web0")
	if !ok {
		n.t.Fatalf("app %s has no listening socket:\n%s", app, out)
	}
	unit = head + "-web0.service"
	want := head + `-web0\x2dproxy.socket`
	if mode == "socket-activation" {
		want = head + "-web0.socket"
	}
	if socket != want {
		n.t.Errorf("socket %s, want %s", socket, want)
	}
	return unit, socket
}

// waitAsleep waits until unit is inactive while socket listens.
func (n *nested) waitAsleep(unit, socket string) {
	n.t.Helper()
	eventually(n.t, 60*time.Second, func() error {
		if st := n.prop(unit, "ActiveState"); st != "inactive" {
			return fmt.Errorf("%s is %s", unit, st)
		}
		if st := n.prop(socket, "ActiveState"); st != "active" {
			return fmt.Errorf("socket %s is %s", socket, st)
		}
		return nil
	})
}

// versionDirs maps each app to its one version folder under root/temp.
func versionDirs(t *testing.T, root string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "temp"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		app, _, ok := strings.Cut(e.Name(), "-")
		if !ok {
			continue
		}
		if prev, dup := out[app]; dup {
			t.Fatalf("%s has two version folders: %s and %s", app, prev, e.Name())
		}
		out[app] = filepath.Join(root, "temp", e.Name())
	}
	return out
}

// largeDemoBundle is the demo app with 64 MiB of data that does not
// compress, which takes a while to unpack.
func largeDemoBundle(t *testing.T, path, host, msg string) {
	t.Helper()
	bin, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: " + host + "\nargs:\n  - --message\n  - " + quoteArg(msg) + "\n")},
		"bin/demoapp":       {Body: bin, Mode: 0o755},
		"data/blob":         {Body: data},
	})
}

func quoteArg(s string) string { return `"` + s + `"` }
