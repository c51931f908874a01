package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	c = multihost.Start(t, multihost.Options{Hosts: n, Keter: keterBinary(t), Nginx: nginxBin, Dir: testkit.Root(t)})
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
}
