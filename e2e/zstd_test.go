package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestZstdBundle: a bundle made with `tar --zstd` deploys like a gzip
// one, survives a keter restart, and is replaced by a gzip one; a zstd
// bundle whose window keter will not allocate is refused with what to do,
// and the live version keeps serving.
func TestZstdBundle(t *testing.T) {
	testkit.NeedBinary(t, "zstd", "apt-get install zstd")
	k := startKeter(t, "")
	host := "zstd-" + testkit.Token() + ".test"
	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	tree := func(msg string) string {
		t.Helper()
		dir := filepath.Join(k.Root, ".tree-"+msg)
		for p, body := range map[string][]byte{
			"config/keter.yaml": fmt.Appendf(nil, "exec: ../bin/demoapp\nhost: %s\nargs: [--message, %s]\n", host, msg),
			"bin/demoapp":       demo,
		} {
			if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p), body, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	sh := func(script string) {
		t.Helper()
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}

	// drop deploys a bundle file and waits until keter calls it live and
	// only it answers (nginx's kept connections to the previous version
	// end within their time bound, docs/switch.md).
	lives := 0
	drop := func(src, msg string) {
		t.Helper()
		k.Drop(src, "zapp.keter")
		lives++
		eventually(t, 60*time.Second, func() error {
			if n := strings.Count(k.Log(), `msg="version live" app=zapp `); n < lives {
				return fmt.Errorf("keter called %d versions live, want %d", n, lives)
			}
			return nil
		})
		k.WaitBody(host, msg, 60*time.Second)
		onlyServes(t, k, host, msg)
	}

	src := filepath.Join(k.Root, ".zapp-v1.keter")
	sh(fmt.Sprintf("tar --zstd -C %s -cf %s config bin", tree("zstd-v1"), src))
	drop(src, "zstd-v1")

	k.restart()
	k.WaitBody(host, "zstd-v1", 60*time.Second)

	gz := filepath.Join(k.Root, ".zapp-v2.keter")
	testkit.DemoBundle(t, gz, host, "--message", "gzip-v2")
	drop(gz, "gzip-v2")

	// From a pipe zstd cannot shrink --long's 128 MiB window to the input.
	long := filepath.Join(k.Root, ".zapp-v3.keter")
	sh(fmt.Sprintf("tar -C %s -cf - config bin | zstd -q --long=27 -c > %s", tree("zstd-v3"), long))
	k.Drop(long, "zapp.keter")
	eventually(t, 60*time.Second, func() error {
		if !strings.Contains(k.Log(), "compress without --long") {
			return fmt.Errorf("keter has not said why it refused the --long bundle")
		}
		return nil
	})
	onlyServes(t, k, host, "gzip-v2")
}

// onlyServes asks host 20 times, a second after the switch settled, and
// wants msg every time.
func onlyServes(t *testing.T, k *keter, host, msg string) {
	t.Helper()
	time.Sleep(time.Second)
	for i := range 20 {
		if code, body, err := k.Get(host, "/"); err != nil || code != 200 || body != msg {
			t.Fatalf("request %d: %d %q %v, want %s", i, code, body, err, msg)
		}
	}
}
