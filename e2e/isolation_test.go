package e2e

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestAppsCannotReachEachOther: two apps, each trying to read the other's
// config/keter.yaml (its env secrets), the other's bundle in incoming/,
// every file under ROOT/etc, and the other's log lines from the status
// API; all fail, with and without the global setuid, while the operator
// (root) reads everything and each app writes its own folder.
func TestAppsCannotReachEachOther(t *testing.T) {
	for _, setuid := range []string{"", "nobody"} {
		t.Run("setuid="+setuid, func(t *testing.T) {
			statusPort := testkit.FreePort(t)
			extra := fmt.Sprintf("status:\n  listen: 127.0.0.1:%d\n", statusPort)
			if setuid != "" {
				extra += "setuid: " + setuid + "\n"
			}
			k := startKeter(t, extra)
			tok := testkit.Token()
			names := []string{"iso-a-" + tok, "iso-b-" + tok}
			for _, n := range names {
				src := filepath.Join(k.Root, n+".src")
				stanzaBundle(t, src, n+".test", "    env: {SECRET: secret-of-"+n+"}\n", "--message", n)
				k.Drop(src, n+".keter")
			}
			for _, n := range names {
				k.WaitBody(n+".test", n, 60*time.Second)
			}
			dirOf := func(n string) string {
				m, _ := filepath.Glob(filepath.Join(k.Root, "temp", n+"-*"))
				if len(m) != 1 {
					t.Fatalf("version folders of %s: %v", n, m)
				}
				return m[0]
			}
			// The hooks folder holds keter's own scripts, the same for
			// everyone: units see it (their privileged hooks run in their
			// mount namespace), read-only.
			hooks := filepath.Join(k.Root, "etc", "hooks")
			var keterFiles, hookFiles []string
			// Once keter has kept the bundles: a copy being written
			// (".NAME.tmp-…") is renamed away under the test's feet.
			eventually(t, 30*time.Second, func() error {
				keterFiles, hookFiles = nil, nil
				var writing []string
				filepath.WalkDir(filepath.Join(k.Root, "etc"), func(p string, d os.DirEntry, err error) error {
					switch {
					case err != nil || !d.Type().IsRegular():
					case strings.Contains(d.Name(), ".tmp-"):
						writing = append(writing, p)
					case filepath.Dir(p) == hooks:
						hookFiles = append(hookFiles, p)
					default:
						keterFiles = append(keterFiles, p)
					}
					return nil
				})
				if len(writing) > 0 {
					return fmt.Errorf("keter is still writing %v", writing)
				}
				return nil
			})
			if len(hookFiles) == 0 {
				t.Fatalf("no hooks under %s", hooks)
			}
			if len(keterFiles) < 3 {
				t.Fatalf("ROOT/etc holds only %v: the test would prove little", keterFiles)
			}
			status := fmt.Sprintf("http://127.0.0.1:%d", statusPort)
			for i, n := range names {
				other := names[1-i]
				ask := func(path string) string {
					_, body, err := k.Get(n+".test", path)
					if err != nil {
						t.Fatal(err)
					}
					return body
				}
				if got := ask("/read?path=config/keter.yaml"); !strings.Contains(got, "secret-of-"+n) {
					t.Errorf("%s cannot read its own config: %q", n, got)
				}
				if got := ask("/write?path=autogen.css"); got != "ok" {
					t.Errorf("%s cannot write into its own folder: %q", n, got)
				}
				targets := append([]string{
					filepath.Join(dirOf(other), "config", "keter.yaml"),
					filepath.Join(k.Root, "incoming", other+".keter"),
				}, keterFiles...)
				for _, p := range targets {
					if got := ask("/read?path=" + url.QueryEscape(p)); strings.Contains(got, "secret-of-") || !strings.Contains(got, "no such file") && !strings.Contains(got, "permission denied") {
						t.Errorf("%s read %s: %q", n, p, got)
					}
				}
				// A hook an app could change would run as root.
				for _, p := range append(hookFiles, filepath.Join(hooks, "new")) {
					if got := ask("/write?path=" + url.QueryEscape(p)); got == "ok" || !strings.Contains(got, "read-only file system") && !strings.Contains(got, "permission denied") {
						t.Errorf("%s wrote %s: %q", n, p, got)
					}
				}
				for _, p := range []string{"/api/apps/" + other + "?log=50", "/api/apps", "/metrics", "/"} {
					if got := ask("/fetch?url=" + url.QueryEscape(status+p)); !strings.HasPrefix(got, "403 ") {
						t.Errorf("%s fetched keter's %s: %.200q", n, p, got)
					}
				}
			}
			// The operator reads what the apps may not.
			code, body, err := getURL(status + "/api/apps/" + names[1] + "?log=50")
			if err != nil || code != 200 || !strings.Contains(body, "demoapp listening") {
				t.Errorf("root asking the status API: %d %.300q %v", code, body, err)
			}
			for _, f := range append(keterFiles, filepath.Join(dirOf(names[0]), "config", "keter.yaml")) {
				if _, err := os.ReadFile(f); err != nil {
					t.Errorf("root cannot read %s: %v", f, err)
				}
			}
		})
	}
}

// TestDeployAsGroupMember: a non-root operator in keter's deploy-group
// copies a bundle in as scp would (written in place, umask 077) and
// deploys one with keter deploy; keter status and maintenance work for
// them, dropping a database does not; a user outside the group gets neither incoming/ nor
// the socket.
func TestDeployAsGroupMember(t *testing.T) {
	tok := testkit.Token()
	group, member, stranger := "ktg"+tok, "ktu"+tok, "kts"+tok
	for _, c := range [][]string{{"groupadd", "--system", group}, {"useradd", "--system", "-M", "-G", group, member}, {"useradd", "--system", "-M", stranger}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			testkit.Missing(t, "%s: %v %s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("userdel", member).Run()
		exec.Command("userdel", stranger).Run()
		exec.Command("groupdel", group).Run()
	})
	k := startKeter(t, "deploy-group: "+group+"\n")
	incoming := filepath.Join(k.Root, "incoming")
	if fi, err := os.Stat(incoming); err != nil || fi.Mode().Perm() != 0o770 || fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("incoming/: %v %v, want drwxrws---", fi.Mode(), err)
	}
	// The CLI the operators run, where they may run it.
	bin := filepath.Join(k.Root, "keter")
	data, err := os.ReadFile(keterBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(user, script string) (string, error) {
		out, err := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--init-groups", "sh", "-c", "umask 077; "+script).CombinedOutput()
		return string(out), err
	}
	host := "scp-" + tok + ".test"
	src := filepath.Join(k.Root, "scp.keter.src")
	testkit.DemoBundle(t, src, host, "--message", "copied")
	os.Chmod(src, 0o644)
	if out, err := as(member, fmt.Sprintf("cat %s > %s/scp.keter", src, incoming)); err != nil {
		t.Fatalf("the operator copying a bundle in: %v %s", err, out)
	}
	k.WaitBody(host, "copied", 60*time.Second)

	host2 := "cli-" + tok + ".test"
	src2 := filepath.Join(k.Root, "cli.keter")
	testkit.DemoBundle(t, src2, host2, "--message", "deployed")
	os.Chmod(src2, 0o644)
	if out, err := as(member, fmt.Sprintf("%s deploy -c %s %s", bin, k.config(), src2)); err != nil || !strings.Contains(out, "is live") {
		t.Fatalf("keter deploy as the operator: %v %s", err, out)
	}
	k.WaitBody(host2, "deployed", 10*time.Second)
	if out, err := as(member, fmt.Sprintf("%s status -c %s", bin, k.config())); err != nil || !strings.Contains(out, "scp") {
		t.Fatalf("keter status as the operator: %v %s", err, out)
	}
	// Maintenance is an operator's switch too.
	if out, err := as(member, fmt.Sprintf("%s maintenance on -c %s cli", bin, k.config())); err != nil || !strings.Contains(out, "maintenance on") {
		t.Fatalf("keter maintenance on as the operator: %v %s", err, out)
	}
	if code, _, _ := k.Get(host2, "/"); code != 503 {
		t.Fatalf("the operator's maintenance: %d, want 503", code)
	}
	if out, err := as(member, fmt.Sprintf("%s maintenance off -c %s cli", bin, k.config())); err != nil {
		t.Fatalf("keter maintenance off as the operator: %v %s", err, out)
	}
	k.WaitBody(host2, "deployed", 10*time.Second)
	if out, err := as(member, fmt.Sprintf("%s postgres drop --yes -c %s nosuchapp", bin, k.config())); err == nil || !strings.Contains(out, "only root") {
		t.Fatalf("keter postgres drop as the operator: %v %s, want refused", err, out)
	}
	if out, err := as(stranger, fmt.Sprintf("%s status -c %s", bin, k.config())); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("keter status as a user outside the group: %v %s, want permission denied", err, out)
	}
	if out, err := as(stranger, fmt.Sprintf("cat %s/scp.keter | wc -c", incoming)); !strings.Contains(out, "Permission denied") {
		t.Fatalf("a user outside the group reading a bundle: %v %s, want permission denied", err, out)
	}
}

func getURL(u string) (int, string, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
