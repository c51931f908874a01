// Command keterbench measures keter's speed goals (issue 10) against a
// real keter, nginx and systemd on loopback, prints a table and writes
// BENCHMARKS.md. bench/run.sh builds it and runs it inside the sandbox
// systemd: it must run where systemctl, systemd-run and journalctl reach
// the systemd that runs keter. It starts one keter per benchmark and stops
// it, its nginx and its apps afterwards; it never changes anything else.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

var allBenches = []string{"deploy", "replace", "throughput", "scale", "restart", "unpack", "status", "acme", "recovery", "instances", "behaviours", "gzip", "hosts", "coldstart", "access", "canary", "thousand", "reboot"}

func main() {
	keterBin := flag.String("keter", "bin/keter", "keter binary to benchmark")
	appBin := flag.String("app", "bin/bench-app", "benchmark app binary (bench/app)")
	warpBin := flag.String("warp-app", "bin/warpapp", "GHC Warp app binary (internal/warpapp), for the cold start benchmark")
	coldRounds := flag.Int("cold-rounds", 10, "cold starts timed per app")
	behaveBin := flag.String("behave-app", "bin/behaveapp", "behave app binary (internal/behaveapp), for the behaviours benchmark")
	base := flag.String("root", "/srv/keter-bench", "parent folder of every keter root (not under /tmp)")
	only := flag.String("only", strings.Join(allBenches, ","), "comma-separated benchmarks to run (empty: only report)")
	md := flag.String("md", "", "write the report as Markdown to this file (empty: do not)")
	cmdline := flag.String("command", "make bench", "the command that reproduces the run, for the report")
	deploys := flag.Int("deploys", 20, "deploys timed for deploy latency")
	replaces := flag.Int("replaces", 20, "replacements under load")
	switches := flag.Int("switches", 10, "replacements of the behave app under load at every behaviour")
	apps := flag.Int("apps", 100, "apps dropped at once")
	thousandApps := flag.Int("thousand-apps", 1000, "apps dropped at once for the thousand benchmark")
	rebootApps := flag.Int("reboot-apps", 100, "apps live when the nested host reboots")
	unpackRuns := flag.Int("unpack-runs", 3, "runs of each unpacker")
	acmeHosts := flag.Int("acme-hosts", 7, "new hosts timed to their first verified HTTPS answer")
	wrkDur := flag.Duration("wrk", 10*time.Second, "wrk duration")
	tpRounds := flag.Int("throughput-rounds", 15, "alternating rounds of the front door comparisons (throughput, gzip, access)")
	round := flag.Duration("round", 3*time.Second, "one wrk run of a front door comparison")
	recRounds := flag.Int("recovery-rounds", 7, "app SIGKILLs timed (nginx SIGKILLs: up to 5)")
	hostsRounds := flag.Int("hosts-rounds", 3, "rounds of the three-host rollout comparison")
	state := flag.String("state", "", "JSON file that keeps results across runs (one benchmark per sandbox)")
	table := flag.Bool("table", true, "print the summary table")
	flag.BoolVar(&zstdBundles, "zstd", false, "compress the benchmark bundles with zstd, not gzip")
	kenv := flag.String("keter-env", "", "comma-separated VAR=value for keter's unit, e.g. GODEBUG=gctrace=1 (diagnosis only)")
	flag.Parse()
	if *kenv != "" {
		keterEnv = strings.Split(*kenv, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := os.ReadFile(*appBin)
	if err != nil && *only != "" {
		fail(err)
	}
	e := env{
		keterBin: *keterBin, app: app, behaveApp: *behaveBin, warpApp: *warpBin, switches: *switches, base: *base, deploys: *deploys, apps: *apps,
		replaces: *replaces, wrkDur: *wrkDur, acmeHosts: *acmeHosts, throughputRounds: *tpRounds, round: *round, recoveryRounds: *recRounds,
		logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	}
	r := &results{Command: *cmdline, Started: time.Now(), Machine: readMachine(ctx)}
	if out, err := command(ctx, *keterBin, "version"); err == nil {
		r.Machine.Keter = strings.TrimSpace(out)
	}
	if *state != "" {
		// Earlier benchmarks of the same run, each in its own sandbox.
		if b, err := os.ReadFile(*state); err == nil {
			if err := json.Unmarshal(b, r); err != nil {
				fail(fmt.Errorf("reading %s: %w", *state, err))
			}
		}
	}
	want := strings.Split(*only, ",")
	run := func(name, title string, f func() string) {
		if !slices.Contains(want, name) {
			return
		}
		e.logf("== %s", title)
		start := time.Now()
		if err := f(); err != "" {
			e.logf("  FAILED: %s", err)
		}
		e.logf("  (%s)", time.Since(start).Round(time.Second))
	}
	run("deploy", "1. deploy latency", func() string { r.Deploy = ptr(benchDeploy(ctx, e)); return r.Deploy.Err })
	run("replace", "2. replace under load", func() string { r.Replace = ptr(benchReplace(ctx, e)); return r.Replace.Err })
	run("throughput", "3. front door throughput", func() string { r.Throughput = ptr(benchThroughput(ctx, e)); return r.Throughput.Err })
	run("scale", "4. scale", func() string { r.Scale = ptr(benchScale(ctx, e)); return r.Scale.Err })
	run("restart", "5. keter restart", func() string { r.Restart = ptr(benchRestart(ctx, e)); return r.Restart.Err })
	run("unpack", "6. unpack", func() string { r.Unpack = ptr(benchUnpack(ctx, e, *unpackRuns)); return r.Unpack.Err })
	run("status", "7. status and metrics", func() string { r.Status = ptr(benchStatus(ctx, e)); return r.Status.Err })
	run("acme", "8. automatic HTTPS", func() string { r.ACME = ptr(benchACME(ctx, e)); return r.ACME.Err })
	run("instances", "10. instances", func() string { r.Instances = ptr(benchInstances(ctx, e)); return r.Instances.Err })
	run("recovery", "9. crash recovery", func() string {
		r.Recovery = ptr(benchRecovery(ctx, e, e.recoveryRounds))
		return r.Recovery.Err
	})
	run("behaviours", "11. every kind of app across switches", func() string {
		r.Behaviours = ptr(benchBehaviours(ctx, e))
		return r.Behaviours.Err
	})
	run("gzip", "12. compression", func() string { r.Gzip = ptr(benchGzip(ctx, e)); return r.Gzip.Err })
	run("hosts", "13. three hosts behind a load balancer", func() string {
		r.Hosts = ptr(benchHosts(ctx, e, *hostsRounds))
		return r.Hosts.Err
	})
	run("coldstart", "14. cold start of a sleeping app", func() string {
		r.ColdStart = ptr(benchColdStart(ctx, e, *coldRounds))
		return r.ColdStart.Err
	})
	run("access", "15. access rules", func() string { r.Access = ptr(benchAccess(ctx, e)); return r.Access.Err })
	run("canary", "16. canary split accuracy", func() string { r.Canary = ptr(benchCanary(ctx, e)); return r.Canary.Err })
	run("thousand", "17. a thousand apps", func() string {
		r.Thousand = ptr(benchThousand(ctx, e, *thousandApps))
		return r.Thousand.Err
	})
	run("frontab", "front door A/B (diagnosis)", func() string {
		if err := benchFrontAB(ctx, e); err != nil {
			return err.Error()
		}
		return ""
	})
	run("reboot", "18. host reboot", func() string { r.Reboot = ptr(benchReboot(ctx, e, *rebootApps)); return r.Reboot.Err })
	r.Finished = time.Now()
	r.Machine.LoadEnd = loadavg()
	if *state != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := writeAtomic(*state, b); err != nil {
			fail(err)
		}
	}

	if *table {
		fmt.Println()
		fmt.Print(r.table())
	}
	if *md != "" {
		if err := writeAtomic(*md, []byte(r.markdown())); err != nil {
			fail(err)
		}
		fmt.Printf("\nwrote %s\n", *md)
	}
	if len(r.errs()) > 0 {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "keterbench:", err)
	os.Exit(1)
}

// outcome is a benchmark's result and the error that cut it short, if any.
type outcome[T any] struct {
	V   T
	Err string `json:",omitempty"`
}

func ptr[T any](v T, err error) *outcome[T] {
	o := &outcome[T]{V: v}
	if err != nil {
		o.Err = err.Error()
	}
	return o
}

type machine struct {
	Cores                 int
	CPU, Kernel, LoadInit string
	LoadEnd               string
	Nginx, Wrk, GoVersion string
	Keter                 string // keter's version (git describe)
}

func readMachine(ctx context.Context) machine {
	m := machine{Cores: runtime.NumCPU(), LoadInit: loadavg(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := command(ctx, "uname", "-r"); err == nil {
		m.Kernel = strings.TrimSpace(out)
	}
	for _, p := range []struct {
		pkg string
		dst *string
	}{{"nginx-light", &m.Nginx}, {"wrk", &m.Wrk}} {
		if out, err := command(ctx, "dpkg-query", "-W", "-f", "${Version}", p.pkg); err == nil {
			*p.dst = p.pkg + " " + strings.TrimSpace(out)
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// writeAtomic writes a temp file next to path, fsyncs and renames it.
func writeAtomic(path string, data []byte) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("writing %s: not a regular file", path)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
