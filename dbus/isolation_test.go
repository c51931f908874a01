package dbus

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestAppsWriteOwnFolderReadNoOneElses: an app writes into its own version
// folder (Yesod's static/tmp), and reads neither another app's folder (its
// config/keter.yaml holds env secrets), nor a bundle in incoming/, nor
// anything under ROOT/etc. With the global setuid every app runs as one
// user, so this must come from the mounts, not from file modes.
func TestAppsWriteOwnFolderReadNoOneElses(t *testing.T) {
	for _, setuid := range []string{"", "nobody"} {
		t.Run("setuid="+setuid, func(t *testing.T) {
			c := newClient(t)
			root := testkit.Root(t)
			apps := []app{newAppIn(t, root), newAppIn(t, root)}
			var keterFiles []string
			for _, a := range apps {
				writeFile(t, filepath.Join(a.dir, "config", "keter.yaml"), 0o644, "env: {SECRET: "+a.name+"}\n")
				keterFiles = append(keterFiles, writeFile(t, filepath.Join(root, "incoming", a.name+".keter"), 0o644, "bundle of "+a.name))
			}
			for _, f := range []struct {
				name string
				mode os.FileMode
			}{{"state.json", 0o600}, {"postgres.yaml", 0o600}, {"env/x.env", 0o600}, {"nginx/nginx.conf", 0o644}, {"bundles/x/1.keter", 0o644}} {
				keterFiles = append(keterFiles, writeFile(t, filepath.Join(root, "etc", f.name), f.mode, "keter's "+f.name))
			}
			sock := filepath.Join(root, "etc", "keter.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			ports := make([]int, len(apps))
			for i, a := range apps {
				ports[i] = testkit.FreePort(t)
				in := webInput(a, ports[i], nil)
				in.Global.Setuid = setuid
				if _, err := start(t, c, in); err != nil {
					t.Fatal(err)
				}
				waitHTTP(t, ports[i], "/pid")
			}
			for i, a := range apps {
				other := apps[1-i]
				// Its own files: read, and written to (relative to the
				// working directory, as the scaffold does, and absolute).
				if body, err := get(ports[i], "/read?path="+url.QueryEscape("config/keter.yaml")); err != nil || !strings.Contains(body, a.name) {
					t.Errorf("%s reading its own config: %q %v", a.name, body, err)
				}
				for _, p := range []string{"written-relative", filepath.Join(a.dir, "written-absolute")} {
					if body, err := get(ports[i], "/write?path="+url.QueryEscape(p)); err != nil {
						t.Errorf("%s writing %s in its own folder: %q %v", a.name, p, body, err)
					}
				}
				for _, p := range append([]string{filepath.Join(other.dir, "config", "keter.yaml"), filepath.Join(other.dir, "bin", "demoapp")}, keterFiles...) {
					if body, err := get(ports[i], "/read?path="+url.QueryEscape(p)); err == nil {
						t.Errorf("%s read %s: %q", a.name, p, body)
					}
				}
				if body, err := get(ports[i], "/write?path="+url.QueryEscape(filepath.Join(other.dir, "planted"))); err == nil {
					t.Errorf("%s wrote into %s's folder: %q", a.name, other.name, body)
				}
			}
			// The test can fail: root (an operator) reads them all.
			for _, f := range keterFiles {
				if _, err := os.ReadFile(f); err != nil {
					t.Errorf("root cannot read %s: %v", f, err)
				}
			}
			if _, err := os.Stat(filepath.Join(apps[0].dir, "written-relative")); err != nil {
				t.Errorf("the app's write did not reach its folder: %v", err)
			}
		})
	}
}

func writeFile(t *testing.T, path string, mode os.FileMode, body string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return path
}
