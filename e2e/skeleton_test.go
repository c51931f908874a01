package e2e

import (
	"archive/tar"
	"fmt"
	"os"

	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestSkeleton is the walking skeleton: a dropped flat-format bundle is
// served through nginx from a transient unit, logs to journald, and goes
// away without a trace when its file is deleted.
func TestSkeleton(t *testing.T) {
	// Keter's default port ranges (the harness gives other tests their own).
	k := startKeter(t, "port-manager:\n  reserve: true\n")
	host := "skeleton-" + testkit.Token() + ".test"
	msg := "hello " + testkit.Token()
	k.deployDemo("skeleton.keter", host, msg)

	units := activeAppUnits(t)
	if len(units) != 1 || !strings.HasPrefix(units[0], "keter-app-skeleton") {
		t.Fatalf("active app units = %v, want one keter-app-skeleton*", units)
	}
	// Keter's default ports are kept from ephemeral use, so an outgoing
	// connection never takes an app's port.
	if reserved, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports"); !strings.Contains(string(reserved), "43124-44320") {
		t.Fatalf("ip_local_reserved_ports = %q, want keter's ranges in it", reserved)
	}
	journal := run(t, "journalctl", "--no-pager", "-o", "cat", "-u", "keter-app-*")
	if !strings.Contains(journal, "demoapp listening on port") {
		t.Fatalf("app output not in journalctl -u 'keter-app-*':\n%s", journal)
	}
	if code, _, err := k.Get("unknown-"+testkit.Token()+".test", "/"); err != nil || code != 404 {
		t.Fatalf("unknown host: code %d err %v, want 404", code, err)
	}

	if err := os.Remove(filepath.Join(k.Root, "incoming", "skeleton.keter")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if code, _, err := k.Get(host, "/"); err != nil || code != 404 {
			return fmt.Errorf("host still answers: code %d err %v", code, err)
		}
		return nil
	})
	k.waitSettled(0, 30*time.Second)
}

// TestBadBundles: each bad bundle gets one log line naming it and the
// reason, and the app already serving keeps serving.
func TestBadBundles(t *testing.T) {
	k := startKeter(t, "")
	host := "good-" + testkit.Token() + ".test"
	k.deployDemo("good.keter", host, "still here")

	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		files  map[string]testkit.File
		raw    []byte
		reason string
	}{
		{name: "notgzip", raw: []byte("this is not a tarball"), reason: "gzip"},
		{name: "noconfig", files: map[string]testkit.File{"bin/demoapp": {Body: demo, Mode: 0o755}}, reason: "keter.yaml"},
		{name: "noexec", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: noexec.test\n")},
			"bin/demoapp":       {Body: demo, Mode: 0o644},
		}, reason: "executable"},
		{name: "missingexec", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/nothere\nhost: missing.test\n")},
		}, reason: "nothere"},
		{name: "breakout", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: breakout.test\n")},
			"../../escaped":     {Body: []byte("x")},
		}, reason: "escaped"},
		{name: "symlinkout", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: symlink.test\n")},
			"bin/demoapp":       {Body: demo, Mode: 0o755},
			"etc":               {Type: tar.TypeSymlink, Linkname: "../../../../../etc"},
		}, reason: "etc"},
		{name: "device", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: device.test\n")},
			"dev/sda":           {Type: tar.TypeBlock},
		}, reason: "dev/sda"},
		{name: "truncated", raw: truncated(t, demo), reason: "not a complete gzipped tarball"},
		{name: "hosttaken", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: " + host + "\n")},
			"bin/demoapp":       {Body: demo, Mode: 0o755},
		}, reason: "good"},
		{name: "injection", files: map[string]testkit.File{
			"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: \"a.test; } server { listen 1; }\"\n")},
			"bin/demoapp":       {Body: demo, Mode: 0o755},
		}, reason: "host"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(k.Root, c.name+".src")
			if c.raw != nil {
				os.WriteFile(path, c.raw, 0o644)
			} else {
				testkit.Bundle(t, path, c.files)
			}
			k.Drop(path, c.name+".keter")
			eventually(t, 30*time.Second, func() error {
				for _, line := range strings.Split(k.Log(), "\n") {
					if strings.Contains(line, c.name+".keter") && strings.Contains(line, c.reason) && strings.Contains(line, "level=ERROR") {
						return nil
					}
				}
				return fmt.Errorf("no error line naming %s.keter and %q", c.name, c.reason)
			})
			if code, body, err := k.Get(host, "/"); err != nil || code != 200 || body != "still here" {
				t.Fatalf("serving app disturbed: %d %q %v", code, body, err)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(k.Root), "escaped")); err == nil {
				t.Fatal("a bundle wrote outside its folder")
			}
		})
	}
	if u := activeAppUnits(t); len(u) != 1 {
		t.Fatalf("active app units = %v, want only the good one", u)
	}
}

func names(es []os.DirEntry) []string {
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

// TestSIGHUPRescans: SIGHUP makes keter read the incoming folder again
// (Keter does this), and it keeps serving while it does.
func TestSIGHUPRescans(t *testing.T) {
	k := startKeter(t, "")
	host := "hup-" + testkit.Token() + ".test"
	k.deployDemo("hup.keter", host, "hup")
	before := strings.Count(k.Log(), "rescanning incoming folder")
	run(t, "systemctl", "kill", "--signal=HUP", "--kill-whom=main", k.Unit)
	eventually(t, 30*time.Second, func() error {
		if n := strings.Count(k.Log(), "rescanning incoming folder"); n != before+1 {
			return fmt.Errorf("%d rescans logged, want %d", n, before+1)
		}
		return nil
	})
	k.WaitBody(host, "hup", time.Second)
	if st := unitProp(t, k.Unit, "ActiveState"); st != "active" {
		t.Fatalf("keter is %s after SIGHUP", st)
	}
	if strings.Count(k.Log(), "version live") != 1 {
		t.Fatal("an unchanged bundle was deployed again on rescan")
	}
}

// TestSlowCopyDeploysOnce writes a bundle into incoming in small chunks,
// as a cp of a large file over a slow disk does: keter must not read it
// half-way, and must deploy it exactly once.
func TestSlowCopyDeploysOnce(t *testing.T) {
	k := startKeter(t, "")
	host := "copy-" + testkit.Token() + ".test"
	src := filepath.Join(k.Root, "copy.src")
	testkit.DemoBundle(t, src, host, "--message", "copied")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(k.Root, "incoming", "copy.keter"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 64 << 10 {
		if _, err := f.Write(data[off:min(off+64<<10, len(data))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.Close()
	k.WaitBody(host, "copied", 60*time.Second)
	time.Sleep(time.Second) // room for a late duplicate deploy to show up
	log := k.Log()
	if n := strings.Count(log, `msg="version live"`); n != 1 {
		t.Fatalf("%d versions went live for one copy, want 1", n)
	}
	if strings.Contains(log, "deploy failed") {
		t.Fatalf("a half-written bundle was reported as failed:\n%s", log)
	}
}

// truncated is a valid bundle cut short, as a copy that stopped half-way.
func truncated(t *testing.T, demo []byte) []byte {
	whole := testkit.BundleBytes(t, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("exec: ../bin/demoapp\nhost: truncated.test\n")},
		"bin/demoapp":       {Body: demo, Mode: 0o755},
	})
	return whole[:len(whole)/2]
}
