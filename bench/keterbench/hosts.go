package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit/multihost"
)

// hostsResult: three hosts (internal/testkit/multihost) behind an nginx
// load balancer, the behave app replaced on all of them.
type hostsResult struct {
	Hosts  int
	Rounds int
	// Rollout is `keter deploy --hosts h1,h2,h3` (one at a time), Parallel
	// the same with --parallel 3, Single three `ssh hN keter deploy`
	// one after another (the sum): each a wall-clock time per round.
	Rollout, Parallel, Single []time.Duration
	// Load is what the strict client saw through the load balancer
	// across every rollout.
	Load              map[loadgen.Behaviour]*loadgen.Counts
	BringUp, Teardown time.Duration
}

func (x hostsResult) failed() (failed, sent int64) {
	for _, c := range x.Load {
		failed += c.Failed
		sent += c.Sent
	}
	return failed, sent
}

// benchT lets the multihost harness (written for tests) run here: a
// Fatalf ends the benchmark with that error.
type benchT struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	logf     func(string, ...any)
}

type benchFatal struct{ err error }

func (t *benchT) Helper()                    {}
func (t *benchT) Cleanup(f func())           { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *benchT) Logf(f string, args ...any) { t.logf("  "+f, args...) }
func (t *benchT) Failed() bool               { return t.failed }
func (t *benchT) Fatalf(f string, args ...any) {
	t.failed = true
	panic(benchFatal{fmt.Errorf(f, args...)})
}
func (t *benchT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func benchHosts(ctx context.Context, e env, rounds int) (res hostsResult, err error) {
	app, err := os.ReadFile(e.behaveApp)
	if err != nil {
		return res, fmt.Errorf("reading the behave app (-behave-app): %w", err)
	}
	t := &benchT{logf: e.logf}
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(benchFatal)
			if !ok {
				panic(p)
			}
			err = f.err
		}
		t0 := time.Now()
		t.cleanup()
		res.Teardown = time.Since(t0)
	}()
	if err := os.MkdirAll(e.base, 0o755); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(e.base, "hosts-")
	if err != nil {
		return res, err
	}
	os.Chmod(dir, 0o755)
	res.Hosts, res.Rounds = 3, rounds
	t0 := time.Now()
	c := multihost.Start(t, multihost.Options{Hosts: res.Hosts, Keter: e.keterBin, Dir: dir})
	res.BringUp = time.Since(t0)
	host := "hosts.bench.test"
	bundles := filepath.Join(dir, "bundles")
	n := 0
	bundle := func() (string, error) {
		n++
		yaml := fmt.Sprintf("exec: ../bin/behaveapp\nhost: %s\nargs: [\"--version\", \"v%d\"]\ndrain: 8s\n", host, n)
		b, err := makeAppBundle(app, "behaveapp", yaml)
		if err != nil {
			return "", err
		}
		p := filepath.Join(bundles, fmt.Sprint(n), "web.keter")
		os.MkdirAll(filepath.Dir(p), 0o755)
		return p, os.WriteFile(p, b, 0o644)
	}
	keter := func(args ...string) (time.Duration, error) {
		t0 := time.Now()
		out, err := c.Keter(args...)
		if err != nil {
			return 0, fmt.Errorf("keter %v: %v\n%s", args, err, out)
		}
		return time.Since(t0), nil
	}
	all := "h1,h2,h3"
	first, err := bundle()
	if err != nil {
		return res, err
	}
	if _, err := keter("deploy", "--hosts", all, "--parallel", "3", first); err != nil {
		return res, err
	}
	run, err := loadgen.Start(ctx, loadgen.Options{Addr: c.LB, Host: host, Dial: c.Dial,
		Behaviours: []loadgen.Behaviour{loadgen.One, loadgen.Split}, WorkersPer: 1, Pause: 30 * time.Millisecond})
	if err != nil {
		return res, err
	}
	defer func() {
		if res.Load == nil {
			run.Stop()
		}
	}()
	time.Sleep(time.Second)
	for range rounds {
		p, err := bundle()
		if err != nil {
			return res, err
		}
		d, err := keter("deploy", "--hosts", all, p)
		if err != nil {
			return res, err
		}
		res.Rollout = append(res.Rollout, d)
		if p, err = bundle(); err != nil {
			return res, err
		}
		if d, err = keter("deploy", "--hosts", all, "--parallel", "3", p); err != nil {
			return res, err
		}
		res.Parallel = append(res.Parallel, d)
		if p, err = bundle(); err != nil {
			return res, err
		}
		var sum time.Duration
		for _, h := range c.Hosts {
			// What one does without --hosts: a local keter deploy on each
			// host over ssh (the bundle is on a filesystem they share here,
			// so no copy is timed).
			d, err := keter2(c, h.Name, p)
			if err != nil {
				return res, err
			}
			sum += d
		}
		res.Single = append(res.Single, sum)
	}
	time.Sleep(time.Second)
	res.Load = run.Stop().PerBehaviour
	return res, nil
}

// keter2 is `ssh HOST keter deploy FILE`, timed.
func keter2(c *multihost.Cluster, host, file string) (time.Duration, error) {
	t0 := time.Now()
	out, err := c.Command("ssh", host, "keter", "deploy", file).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ssh %s keter deploy: %v\n%s", host, err, out)
	}
	return time.Since(t0), nil
}

func (r *results) hostsRows() []row {
	o := r.Hosts
	if o == nil {
		return nil
	}
	if o.Err != "" {
		return []row{{"13. three hosts", "did not finish: " + o.Err, "", "FAILED"}}
	}
	x := o.V
	failed, sent := x.failed()
	return []row{
		{fmt.Sprintf("13. 3 hosts behind a load balancer: `deploy --hosts` (one at a time) / three `ssh host keter deploy` in a row, median of %d", x.Rounds),
			fmt.Sprintf("%s vs %s (%.2f×); --parallel 3: %s", secs(median(x.Rollout)), secs(median(x.Single)),
				median(x.Rollout).Seconds()/median(x.Single).Seconds(), secs(median(x.Parallel))),
			"(none stated)", "—"},
		{"13. 3 hosts: failed requests through the load balancer during the rollouts (strict client, one and two writes, GET and POST)",
			fmt.Sprintf("%d failed of %d", failed, sent), "0", verdict(failed == 0 && sent > 0)},
	}
}

func (r *results) hostsDetails(p func(string, ...any)) {
	o := r.Hosts
	if o == nil || o.Err != "" {
		return
	}
	x := o.V
	p("")
	p("### 13. Three hosts behind a load balancer")
	p("")
	p("internal/testkit/multihost: %d hosts, each a network namespace with its own sandbox systemd, keter,", x.Hosts)
	p("managed nginx and sshd, behind a plain nginx load balancer (a new upstream connection per request);")
	p("the operator's keter reaches them with OpenSSH. Bring-up %s, teardown %s.", secs(x.BringUp), secs(x.Teardown))
	p("Each round replaces internal/behaveapp (`drain: 8s`) three times on every host: `keter deploy --hosts`")
	p("one host at a time, then with `--parallel 3`, then by three `ssh hN keter deploy FILE` one after another")
	p("(the bundle is on a shared filesystem here, so the single deploys copy nothing over ssh; the rollout sends")
	p("it on ssh's stdin). Wall-clock times of the commands:")
	p("")
	p("| round | --hosts, one at a time | --hosts --parallel 3 | 3 × ssh keter deploy |")
	p("|---|---|---|---|")
	for i := range x.Rollout {
		p("| %d | %s | %s | %s |", i+1, secs(x.Rollout[i]), secs(x.Parallel[i]), secs(x.Single[i]))
	}
	p("")
	p("The strict client (internal/loadgen, keep-alive, no retries) through the load balancer during all of it:")
	p("")
	for _, b := range []loadgen.Behaviour{loadgen.One, loadgen.Split} {
		if c := x.Load[b]; c != nil {
			p("- %s: sent %d, failed %d, answers per version %s", b, c.Sent, c.Failed, versionCounts(c.Versions))
			for _, f := range c.Failures {
				p("  - `%s`", f)
			}
		}
	}
}
