package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/internal/testkit/multihost"
)

// startHosts starts a cluster of n keter hosts behind a load balancer
// (see internal/testkit/multihost) and checks, once the test is over,
// that nothing of it is left.
func startHosts(t *testing.T, n int) *multihost.Cluster {
	t.Helper()
	return startHostsWith(t, multihost.Options{Hosts: n})
}

// startHostsWith is startHosts with more options (the binaries and the
// folder are filled in).
func startHostsWith(t *testing.T, o multihost.Options) *multihost.Cluster {
	t.Helper()
	testkit.NeedSystemd(t)
	nginxBin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	testkit.NeedBinary(t, "sshd", "apt-get install openssh-server")
	testkit.NeedBinary(t, "ssh", "apt-get install openssh-client")
	testkit.NeedBinary(t, "ip", "apt-get install iproute2")
	var c *multihost.Cluster
	t.Cleanup(func() { // runs after the cluster's own teardown
		if c == nil {
			return
		}
		if left := c.Leftovers(); len(left) > 0 {
			t.Errorf("left behind after teardown: %v", left)
		}
	})
	o.Keter, o.Nginx, o.Dir = keterBinary(t), nginxBin, testkit.Root(t)
	c = multihost.Start(t, o)
	return c
}

// hostsKeter runs the keter CLI in the operator namespace and fails the
// test unless it exits as wantOK says.
func hostsKeter(t *testing.T, c *multihost.Cluster, wantOK bool, args ...string) string {
	t.Helper()
	t0 := time.Now()
	out, err := c.Keter(args...)
	t.Logf("keter %s (%.1fs, %v):\n%s", strings.Join(args, " "), time.Since(t0).Seconds(), err, out)
	if (err == nil) != wantOK {
		t.Fatalf("keter %s: exit %v, want success %v", strings.Join(args, " "), err, wantOK)
	}
	return out
}

func mustMatch(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Errorf("output does not match %q", p)
		}
	}
}

// TestHosts deploys to three hosts behind a load balancer over real ssh:
// a rollout under load, a broken bundle, differing versions, rollback,
// lock contention and a host that vanishes mid-rollout, in that order on
// one cluster (bring-up is the slow part).
func TestHosts(t *testing.T) {
	c := startHosts(t, 3)
	dir := t.TempDir()
	const host = "app.hosts.test"
	bundle := func(v string) string {
		p := filepath.Join(dir, "v"+v, "web.keter")
		os.MkdirAll(filepath.Dir(p), 0o755)
		testkit.BehaveBundle(t, p, host, "drain: 8s\n", "--version", v)
		return p
	}
	all := "h1,h2,h3"

	t.Run("hosts see the machine's PostgreSQL socket", func(t *testing.T) {
		// For shared storage: each host reaches the one server through its
		// unix socket, bound into the host's mount namespace.
		if _, err := os.Stat("/run/postgresql"); err != nil {
			t.Skip("no /run/postgresql here")
		}
		for _, h := range c.Hosts {
			if out, err := h.Exec("test", "-d", "/run/postgresql"); err != nil {
				t.Errorf("%s has no /run/postgresql: %v %s", h.Name, err, out)
			}
		}
	})

	t.Run("first deploy", func(t *testing.T) {
		out := hostsKeter(t, c, true, "deploy", "--hosts", all, "--parallel", "3", bundle("1"))
		mustMatch(t, out, `(?m)^h1: live version \S+ \(bundle [0-9a-f]{12}\) in [0-9.]+s$`, `(?m)^h2: live`, `(?m)^h3: live`)
	})

	t.Run("rollout under load", func(t *testing.T) {
		run, err := loadgen.Start(t.Context(), loadgen.Options{
			Addr: c.LB, Host: host, Dial: c.Dial, Behaviours: []loadgen.Behaviour{loadgen.Split, loadgen.One},
			WorkersPer: 2, Pause: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		out := hostsKeter(t, c, true, "deploy", "--hosts", all, bundle("2"))
		time.Sleep(time.Second)
		res := run.Stop()
		t.Logf("load through the load balancer:\n%s", res)
		if res.Failed() != 0 {
			t.Errorf("%d requests failed during the rollout", res.Failed())
		}
		for _, b := range []loadgen.Behaviour{loadgen.Split, loadgen.One} {
			if res.PerBehaviour[b].Versions["1"] == 0 || res.PerBehaviour[b].Versions["2"] == 0 {
				t.Errorf("%s: versions answered %v, want both 1 and 2", b, res.PerBehaviour[b].Versions)
			}
		}
		// One host at a time: h1 is live before h2 starts.
		if i1, i2 := strings.Index(out, "h1: live"), strings.Index(out, "h2: live"); i1 < 0 || i2 < i1 {
			t.Errorf("hosts did not finish in order:\n%s", out)
		}
	})
	v2 := digest12(t, bundle("2"))
	h3 := c.Hosts[2]

	t.Run("broken bundle stops after the first batch", func(t *testing.T) {
		broken := filepath.Join(dir, "broken", "web.keter")
		os.MkdirAll(filepath.Dir(broken), 0o755)
		testkit.BehaveBundle(t, broken, host, "", "--no-such-flag")
		out := hostsKeter(t, c, false, "deploy", "--hosts", all, "--parallel", "2", broken)
		mustMatch(t, out, `(?m)^h1: failed in [0-9.]+s: `, `(?m)^h2: failed in`, `version \S+ keeps serving there`,
			`(?m)^  h3: version \S+ \(bundle `+v2+`\) \(not reached\)$`,
			// The app's last lines: its error, or (once its usage text has
			// pushed that out of the tail) its exit as systemd logged it.
			`last log lines:`, `no-such-flag|status=2/INVALIDARGUMENT`)
		if strings.Contains(out, "h3: failed") || strings.Contains(out, "h3: live") {
			t.Errorf("h3 was touched:\n%s", out)
		}
		st := hostsKeter(t, c, true, "status", "--hosts", all, "web")
		if d := statusDigests(st, "web"); d["h1"] != v2 || d["h2"] != v2 || d["h3"] != v2 {
			t.Errorf("after a failed rollout every host must still run %s: %v", v2, d)
		}
	})

	v3 := digest12(t, bundle("3"))
	t.Run("status shows hosts that differ", func(t *testing.T) {
		hostsKeter(t, c, true, "deploy", "--hosts", "h1", bundle("3"))
		st := hostsKeter(t, c, false, "status", "--hosts", all)
		if d := statusDigests(st, "web"); d["h1"] != v3 || d["h2"] != v2 || d["h3"] != v2 {
			t.Errorf("status digests %v, want h1 %s and the others %s", d, v3, v2)
		}
		mustMatch(t, st, `(?m)^web\s+h1\s+.*DIFFERS`, `(?m)^web\s+h3\s+.*DIFFERS`)
	})

	t.Run("rollback returns each host to what its last rollout replaced", func(t *testing.T) {
		out := hostsKeter(t, c, true, "rollback", "--hosts", all, "web")
		mustMatch(t, out, `(?m)^h1: live version \S+ \(bundle `+v2+`\)`,
			`(?m)^h2: unchanged .*already runs the version`, `(?m)^h3: unchanged .*did not reach this host`)
		st := hostsKeter(t, c, true, "status", "--hosts", all, "web")
		if d := statusDigests(st, "web"); d["h1"] != v2 || d["h2"] != v2 || d["h3"] != v2 {
			t.Errorf("after rollback every host must run %s: %v", v2, d)
		}
	})

	t.Run("maintenance on every host", func(t *testing.T) {
		// Every spelling of a destination ssh takes: an alias, user@host,
		// and an ssh:// URI with an IPv6 address and a port.
		dests := "h1,root@" + c.Hosts[1].IP + ",ssh://root@[" + c.Hosts[2].IP6 + "]:22"
		out := hostsKeter(t, c, true, "maintenance", "on", "web", "--hosts", dests, "--message", "back soon")
		mustMatch(t, out, `(?m)^h1: maintenance on$`, `(?m)^root@10\.77\.0\.2: maintenance on$`, `(?m)^ssh://root@\[fd77::3\]:22: maintenance on$`)
		st := hostsKeter(t, c, true, "status", "--hosts", all, "web")
		if strings.Count(st, "maintenance") != 3 {
			t.Errorf("status does not show maintenance on 3 hosts:\n%s", st)
		}
		hostsKeter(t, c, true, "maintenance", "off", "web", "--hosts", all)
	})

	t.Run("one rollout at a time", func(t *testing.T) {
		slow := filepath.Join(dir, "slow", "web.keter")
		os.MkdirAll(filepath.Dir(slow), 0o755)
		slowBundle(t, slow, host, "slow", 8*time.Second)
		// A holds h1 and h2 while h1 starts the slow version.
		a := c.Command(keterBinary(t), "deploy", "--hosts", "h1,h2", slow)
		a.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var aOut syncBuf
		a.Stdout, a.Stderr = &aOut, &aOut
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { syscall.Kill(-a.Process.Pid, syscall.SIGKILL); a.Wait() }()
		waitFile(t, filepath.Join(c.Hosts[1].Root, "incoming", ".rollout", "web.holder"), 30*time.Second)
		out := hostsKeter(t, c, false, "deploy", "--hosts", "h2,h3", bundle("4"))
		mustMatch(t, out, `(?m)^h2: failed .*another rollout of web holds the lock: \S+@\S+ \(pid \d+\) since \d{4}-`, `no host was changed`)
		// B waits; killing A's ssh sessions (and A) releases the locks.
		b := c.Command(keterBinary(t), "deploy", "--hosts", "h2,h3", "--wait", bundle("4"))
		var bOut syncBuf
		b.Stdout, b.Stderr = &bOut, &bOut
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			if !strings.Contains(bOut.String(), "h2: waiting for the rollout lock of web, held by") {
				return fmt.Errorf("b does not wait yet: %q", bOut.String())
			}
			return nil
		})
		if err := syscall.Kill(-a.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		a.Wait()
		err := b.Wait()
		t.Logf("a (killed):\n%s\nb:\n%s", aOut.String(), bOut.String())
		if err != nil {
			t.Fatalf("the waiting rollout failed after the holder was killed: %v", err)
		}
		mustMatch(t, bOut.String(), `(?m)^h2: live`, `(?m)^h3: live`)
	})

	t.Run("a host torn down mid-rollout", func(t *testing.T) {
		slow := filepath.Join(dir, "slow2", "web.keter")
		os.MkdirAll(filepath.Dir(slow), 0o755)
		slowBundle(t, slow, host, "slow2", 20*time.Second)
		a := c.Command(keterBinary(t), "deploy", "--hosts", "h3,h1", slow)
		var aOut syncBuf
		a.Stdout, a.Stderr = &aOut, &aOut
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, filepath.Join(h3.Root, "incoming", "web.keter"), 30*time.Second)
		eventually(t, 30*time.Second, func() error {
			if data, _ := os.ReadFile(filepath.Join(h3.Root, "incoming", "web.keter")); digest12(t, slow) != hex12(data) {
				return fmt.Errorf("h3 has not received the slow bundle yet")
			}
			return nil
		})
		c.Kill(h3)
		err := a.Wait()
		out := aOut.String()
		t.Logf("rollout:\n%s", out)
		if err == nil {
			t.Fatal("the rollout succeeded with h3 gone")
		}
		mustMatch(t, out, `(?m)^h3: failed in [0-9.]+s: \S`, `(?m)^  h3: unknown \(failed\)$`, `(?m)^  h1: version \S+ \(bundle [0-9a-f]{12}\) \(not reached\)$`)
		st := hostsKeter(t, c, false, "status", "--hosts", all, "web")
		mustMatch(t, st, `(?m)^web\s+h3\s+\?\s+-\s+unreachable: `)
	})
}

// digest12 is the first 12 hex digits of a bundle's sha256, as keter
// prints it.
func digest12(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return hex12(data)
}

// slowBundle is the behave app behind a start script that sleeps first,
// so a deploy of it takes a while.
func slowBundle(t *testing.T, path, host, version string, sleep time.Duration) {
	t.Helper()
	bin, err := os.ReadFile(testkit.BehaveApp(t))
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\nsleep %d\nexec \"$(dirname \"$0\")/behaveapp\" \"$@\"\n", int(sleep.Seconds()))
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(fmt.Sprintf("exec: ../bin/slow\nhost: %s\nargs: [\"--version\", %q]\n", host, version))},
		"bin/slow":          {Body: []byte(script), Mode: 0o755},
		"bin/behaveapp":     {Body: bin, Mode: 0o755},
	})
}

// statusDigests reads keter status --hosts's rows for app: host → bundle.
func statusDigests(out, app string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == app {
			m[f[1]] = f[3]
		}
	}
	return m
}

// waitFile waits until path exists (a host's lock holder, say).
func waitFile(t *testing.T, path string, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		_, err := os.Stat(path)
		return err
	})
}

func hex12(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:12]
}

// syncBuf is a command's output, read while it runs.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHostsUsage: bad --hosts input is refused before any ssh runs.
func TestHostsUsage(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "good.keter")
	testkit.Bundle(t, good, map[string]testkit.File{"config/keter.yaml": {Body: []byte("exec: ../run\nhost: good.test\n")}, "run": {Mode: 0o755}})
	hostsFile := filepath.Join(root, "hosts")
	os.WriteFile(hostsFile, []byte("web1\n-oProxyCommand=touch /tmp/pwned\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deploy", "--hosts", "-oProxyCommand=touch /tmp/pwned", good}, 1, "starts with '-'"},
		{[]string{"deploy", "--hosts-file", hostsFile, good}, 1, "starts with '-'"},
		{[]string{"deploy", "--hosts", "web1,web1", good}, 1, "given twice"},
		{[]string{"deploy", "--hosts", "ssh://u:pw@web1", good}, 1, "no password"},
		{[]string{"deploy", "--hosts", "web1", "--no-wait", good}, 2, "--no-wait does not go with --hosts"},
		{[]string{"deploy", "--hosts", "web1", "--parallel", "0", good}, 1, "--parallel must be 1 or more"},
		{[]string{"rollback", "--hosts", " , ", "app"}, 1, "no hosts given"},
		{[]string{"status", "--hosts", "a b"}, 1, "space"},
		{[]string{"deploy", "--help"}, 0, "-hosts-file string"},
	} {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			out, errOut, code := cli(t, c.args...)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Fatalf("exit %d, want %d; output lacks %q?\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}
