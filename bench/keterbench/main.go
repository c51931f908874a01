// Command keterbench measures keter's speed goals (issue 10) against a
// real keter, nginx and systemd on loopback, prints a table and writes
// BENCHMARKS.md. bench/run.sh builds it and runs it inside the sandbox
// systemd: it must run where systemctl, systemd-run and journalctl reach
// the systemd that runs keter. It starts one keter per benchmark and stops
// it, its nginx and its apps afterwards; it never changes anything else.
package main

import (
	"context"
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

var allBenches = []string{"deploy", "replace", "throughput", "scale", "restart", "unpack"}

func main() {
	keterBin := flag.String("keter", "bin/keter", "keter binary to benchmark")
	appBin := flag.String("app", "bin/bench-app", "benchmark app binary (bench/app)")
	base := flag.String("root", "/srv/keter-bench", "parent folder of every keter root (not under /tmp)")
	only := flag.String("only", strings.Join(allBenches, ","), "comma-separated benchmarks to run")
	md := flag.String("md", "", "write the report as Markdown to this file (empty: do not)")
	cmdline := flag.String("command", "make bench", "the command that reproduces the run, for the report")
	deploys := flag.Int("deploys", 20, "deploys timed for deploy latency")
	replaces := flag.Int("replaces", 20, "replacements under load")
	apps := flag.Int("apps", 100, "apps dropped at once")
	unpackRuns := flag.Int("unpack-runs", 3, "runs of each unpacker")
	wrkDur := flag.Duration("wrk", 10*time.Second, "wrk duration")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := os.ReadFile(*appBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keterbench:", err)
		os.Exit(1)
	}
	e := env{
		keterBin: *keterBin, app: app, base: *base, deploys: *deploys, apps: *apps,
		replaces: *replaces, wrkDur: *wrkDur,
		logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	}
	r := &results{command: *cmdline, started: time.Now(), machine: readMachine(ctx), errs: map[string]error{}}
	if out, err := command(ctx, *keterBin, "version"); err == nil {
		r.machine.keter = strings.TrimSpace(out)
	}
	want := strings.Split(*only, ",")
	run := func(name, title string, f func() error) {
		if !slices.Contains(want, name) {
			return
		}
		e.logf("== %s", title)
		start := time.Now()
		if err := f(); err != nil {
			r.errs[name] = err
			e.logf("  FAILED: %v", err)
		}
		e.logf("  (%s)", time.Since(start).Round(time.Second))
	}
	run("deploy", "1. deploy latency", func() error { r.deploy = ptr(benchDeploy(ctx, e)); return r.deploy.err })
	run("replace", "2. replace under load", func() error { r.replace = ptr(benchReplace(ctx, e)); return r.replace.err })
	run("throughput", "3. front door throughput", func() error { r.throughput = ptr(benchThroughput(ctx, e)); return r.throughput.err })
	run("scale", "4. scale", func() error { r.scale = ptr(benchScale(ctx, e)); return r.scale.err })
	run("restart", "5. keter restart", func() error { r.restart = ptr(benchRestart(ctx, e)); return r.restart.err })
	run("unpack", "6. unpack", func() error { r.unpack = ptr(benchUnpack(ctx, e, *unpackRuns)); return r.unpack.err })
	r.finished = time.Now()
	r.machine.loadEnd = loadavg()

	fmt.Println()
	fmt.Print(r.table())
	if *md != "" {
		if err := writeAtomic(*md, []byte(r.markdown())); err != nil {
			fmt.Fprintln(os.Stderr, "keterbench:", err)
			os.Exit(1)
		}
		fmt.Printf("\nwrote %s\n", *md)
	}
	if len(r.errs) > 0 {
		os.Exit(1)
	}
}

// outcome is a benchmark's result and the error that cut it short, if any.
type outcome[T any] struct {
	v   T
	err error
}

func ptr[T any](v T, err error) *outcome[T] { return &outcome[T]{v, err} }

type machine struct {
	cores                 int
	cpu, kernel, loadInit string
	loadEnd               string
	nginx, wrk, goVersion string
	keter                 string // keter's version (git describe)
}

func readMachine(ctx context.Context) machine {
	m := machine{cores: runtime.NumCPU(), loadInit: loadavg(), goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := command(ctx, "uname", "-r"); err == nil {
		m.kernel = strings.TrimSpace(out)
	}
	for _, p := range []struct {
		pkg string
		dst *string
	}{{"nginx-light", &m.nginx}, {"wrk", &m.wrk}} {
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
