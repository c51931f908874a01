package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// statusResult: what `keter status` and /metrics cost with many apps live
// (issue 18: "well under a second" with 100 apps).
type statusResult struct {
	Apps      int
	Calls     int
	Counted   []string        // usage series /metrics had for every app
	FirstCLI  time.Duration   // the first `keter status` after the apps came up
	CLI       []time.Duration // `keter status`, the CLI process end to end
	JSON      []time.Duration // `keter status --json`
	Metrics   []time.Duration // GET /metrics
	KeterCPU  time.Duration   // keter's CPU over the timed calls
	SystemCPU time.Duration   // systemd's (PID 1) CPU over the timed calls
	Idle      time.Duration   // a window with the apps live and nobody asking
	IdleKeter time.Duration   // keter's CPU in it (its own usage reads included)
}

const goalStatus = time.Second

func benchStatus(ctx context.Context, e env) (res statusResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "status")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	res.Apps, res.Calls = e.apps, 20
	if err := dropApps(ctx, k, e.app, e.apps); err != nil {
		return res, err
	}
	e.logf("  %d apps serving", e.apps)
	sleep(ctx, 2*time.Second)
	cfg := filepath.Join(k.root, "keter-config.yaml")
	cli := func(args ...string) (time.Duration, error) {
		t0 := time.Now()
		_, err := command(ctx, e.keterBin, append([]string{"status", "-c", cfg}, args...)...)
		return time.Since(t0), err
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", k.statusPort)
	scrape := func() (time.Duration, string, error) {
		t0 := time.Now()
		resp, err := http.Get(metricsURL)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("GET /metrics: %s", resp.Status)
		}
		return time.Since(t0), string(b), err
	}
	if res.FirstCLI, err = cli(); err != nil {
		return res, err
	}
	// What is measured must be there: a series of each app, per counted figure.
	_, body, err := scrape()
	if err != nil {
		return res, err
	}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (keter_app_\w+) `).FindAllStringSubmatch(body, -1) {
		if n := strings.Count(body, "\n"+m[1]+"{"); n >= e.apps {
			res.Counted = append(res.Counted, m[1])
		}
	}
	if !slices.Contains(res.Counted, "keter_app_memory_bytes") {
		return res, fmt.Errorf("/metrics lacks keter_app_memory_bytes for every app:\n%s", body)
	}

	pid, err := k.mainPID(ctx)
	if err != nil {
		return res, err
	}
	k0, err := readProc(pid)
	if err != nil {
		return res, err
	}
	s0, err := readProc(1)
	if err != nil {
		return res, err
	}
	for range res.Calls {
		d, err := cli()
		if err != nil {
			return res, err
		}
		res.CLI = append(res.CLI, d)
		if d, err = cli("--json"); err != nil {
			return res, err
		}
		res.JSON = append(res.JSON, d)
		d, _, err = scrape()
		if err != nil {
			return res, err
		}
		res.Metrics = append(res.Metrics, d)
	}
	k1, err := readProc(pid)
	if err != nil {
		return res, err
	}
	s1, err := readProc(1)
	if err != nil {
		return res, err
	}
	res.KeterCPU, res.SystemCPU = k1.cpu-k0.cpu, s1.cpu-s0.cpu
	e.logf("  keter status: median %s; /metrics: median %s", ms(median(res.CLI)), ms(median(res.Metrics)))

	res.Idle = 65 * time.Second // two of keter's own usage reads (every 30 s)
	if err := sleep(ctx, res.Idle); err != nil {
		return res, err
	}
	k2, err := readProc(pid)
	if err != nil {
		return res, err
	}
	res.IdleKeter = k2.cpu - k1.cpu
	return res, nil
}

// dropApps drops n apps at once and waits until every one serves.
func dropApps(ctx context.Context, k *keter, app []byte, n int) error {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("app%03d", i)
		b, err := makeBundle(app, names[i]+".bench.test", names[i])
		if err != nil {
			return err
		}
		if err := stage(k.incoming(), names[i], b); err != nil {
			return err
		}
	}
	for _, name := range names {
		if _, err := publish(k.incoming(), name); err != nil {
			return err
		}
	}
	for _, name := range names {
		if _, err := waitBody(ctx, k.port, name+".bench.test", name, 20*time.Millisecond, 3*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func (s statusResult) rows() []row {
	v := func(ds []time.Duration) string { return verdict(slices.Max(ds) < goalStatus) }
	f := func(ds []time.Duration) string {
		return fmt.Sprintf("median %s, p90 %s, max %s over %d calls", ms(median(ds)), ms(percentile(ds, 90)), ms(slices.Max(ds)), len(ds))
	}
	calls := time.Duration(3 * s.Calls)
	return []row{
		{fmt.Sprintf("7. status with %d apps live: `keter status`", s.Apps), f(s.CLI) + fmt.Sprintf("; the first after the apps came up %s", ms(s.FirstCLI)), "well under 1 s", v(s.CLI)},
		{fmt.Sprintf("7. status with %d apps live: `keter status --json`", s.Apps), f(s.JSON), "well under 1 s", v(s.JSON)},
		{fmt.Sprintf("7. status with %d apps live: GET /metrics", s.Apps), f(s.Metrics), "well under 1 s", v(s.Metrics)},
		{"7. status: CPU per call, and keter idle",
			fmt.Sprintf("keter %s, systemd %s per call (mean over %d); keter idle with the apps live: %s of CPU in %s",
				ms(s.KeterCPU/calls), ms(s.SystemCPU/calls), 3*s.Calls, ms(s.IdleKeter), s.Idle),
			"(none stated)", "—"},
	}
}

func (s statusResult) details(p func(string, ...any)) {
	p("")
	p("### 7. Status and metrics with many apps")
	p("")
	p("%d apps (bench/app) dropped at once and serving; then %d rounds of `keter status`, `keter status --json`", s.Apps, s.Calls)
	p("(each the CLI process end to end, over keter's unix socket) and `GET /metrics` on the status page.")
	p("Each answer reads every app unit from keter's unit cache (states from systemd's signals, usage")
	p("figures from cgroup files every 5 s; see docs/status.md) and updates keter's running totals.")
	p("Usage series present for every app: %s.", strings.Join(s.Counted, ", "))
	p("")
	p("- `keter status`: %s.", joinDur(s.CLI))
	p("- `keter status --json`: %s.", joinDur(s.JSON))
	p("- GET /metrics: %s.", joinDur(s.Metrics))
	p("- keter's CPU over the %d calls: %s; systemd's (PID 1): %s (from /proc, 10 ms ticks).", 3*s.Calls, ms(s.KeterCPU), ms(s.SystemCPU))
	p("- keter's CPU in %s with nobody asking (its cache reads every unit's cgroup every 5 s): %s.", s.Idle, ms(s.IdleKeter))
}
