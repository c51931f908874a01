package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
)

// behavioursResult: internal/behaveapp under internal/loadgen (every
// behaviour, GET and POST, keep-alive, no retries) through keter's nginx
// while it is replaced again and again, each switch while long answers are
// in flight.
type behavioursResult struct {
	Drain   time.Duration // the bundle's drain:
	Pause   time.Duration // loadgen's pause between requests
	Between time.Duration // from one version live to the next drop
	// Switches[i] is when version v(i+1) first answered a fresh GET /
	// through nginx; Live[i] is keter's "version live" line for it.
	Switches, Live []time.Time
	Reloads        int // "nginx reloaded" from the load's start to its end
	// Drained counts the old versions stopped by how they drained
	// (keter's "old version stopped" drained=…, without its time).
	Drained map[string]int
	Load    time.Duration
	Counts  map[loadgen.Behaviour]*loadgen.Counts
}

// behaviourVersion is the version string of replacement i (v0 first).
func behaviourVersion(i int) string { return "v" + strconv.Itoa(i) }

// switchTimes are, for behaviour b and each switch with a figure, how long
// after it b's first answer from the new version began, and how long
// after it b's last answer from the version it replaced ended (negative:
// before). A switch whose version b never met has no figure.
func (x behavioursResult) switchTimes(b loadgen.Behaviour) (firstNew, lastOld []time.Duration) {
	c := x.Counts[b]
	if c == nil {
		return nil, nil
	}
	for i, at := range x.Switches {
		if t, ok := c.FirstStarted[behaviourVersion(i+1)]; ok {
			firstNew = append(firstNew, t.Sub(at))
		}
		if t, ok := c.LastEnded[behaviourVersion(i)]; ok {
			lastOld = append(lastOld, t.Sub(at))
		}
	}
	return firstNew, lastOld
}

// failed is the failures across behaviours; sent the requests.
func (x behavioursResult) failed() (failed, sent int64) {
	for _, c := range x.Counts {
		failed += c.Failed
		sent += c.Sent
	}
	return failed, sent
}

func (x behavioursResult) behaviours() []loadgen.Behaviour {
	return slices.DeleteFunc(loadgen.All(), func(b loadgen.Behaviour) bool { return x.Counts[b] == nil })
}

func benchBehaviours(ctx context.Context, e env) (res behavioursResult, err error) {
	app, err := os.ReadFile(e.behaveApp)
	if err != nil {
		return res, fmt.Errorf("reading the behave app (-behave-app): %w", err)
	}
	res.Drain, res.Pause, res.Between = 8*time.Second, 30*time.Millisecond, 1500*time.Millisecond
	k, err := startKeter(ctx, e.keterBin, e.base, "behaviours")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "behave.bench.test"
	bundles := make([][]byte, e.switches+1)
	for i := range bundles {
		yaml := fmt.Sprintf("exec: ../bin/behaveapp\nhost: %s\nargs: [\"--version\", %q]\ndrain: %s\n",
			host, behaviourVersion(i), res.Drain)
		if bundles[i], err = makeAppBundle(app, "behaveapp", yaml); err != nil {
			return res, err
		}
	}
	// deploy drops version i and returns when it first answered a fresh
	// request through nginx.
	deploy := func(i int) (time.Time, error) {
		if err := stage(k.incoming(), "behave", bundles[i]); err != nil {
			return time.Time{}, err
		}
		if _, err := publish(k.incoming(), "behave"); err != nil {
			return time.Time{}, err
		}
		return waitPrefix(ctx, k.port, host, "behaveapp "+behaviourVersion(i)+" ", 5*time.Millisecond, 60*time.Second)
	}
	if _, err := deploy(0); err != nil {
		return res, err
	}
	if _, err := k.waitLog(ctx, "version live", 1, 30*time.Second); err != nil {
		return res, err
	}
	entries, err := k.journal(ctx)
	if err != nil {
		return res, err
	}
	reloads0 := count(entries, "nginx reloaded")

	run, err := loadgen.Start(ctx, loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.port), Host: host, WorkersPer: 1, Pause: res.Pause,
	})
	if err != nil {
		return res, err
	}
	start := time.Now()
	stopped := false
	defer func() {
		if !stopped {
			run.Stop()
		}
	}()
	// Let every behaviour get going, so the first switch meets long
	// answers in flight too.
	if err := sleep(ctx, res.Between); err != nil {
		return res, err
	}
	e.logf("  %d replacements under load at every behaviour, %s apart", e.switches, res.Between)
	for i := 1; i <= e.switches; i++ {
		at, err := deploy(i)
		if err != nil {
			return res, err
		}
		res.Switches = append(res.Switches, at)
		e.logf("  switch %2d: %s live", i, behaviourVersion(i))
		if err := sleep(ctx, res.Between); err != nil {
			return res, err
		}
	}
	// Every old version drained (a WebSocket holds one to its drain time)
	// and stopped before the load ends, so the last figures are the
	// switches', not the load's end.
	if _, err := k.waitLog(ctx, "old version stopped", e.switches, res.Drain+60*time.Second); err != nil {
		return res, err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return res, err
	}
	stopped = true
	out := run.Stop()
	res.Load = time.Since(start)
	res.Counts = out.PerBehaviour
	if entries, err = k.journal(ctx); err != nil {
		return res, err
	}
	res.Reloads = count(entries, "nginx reloaded") - reloads0
	res.Drained = map[string]int{}
	for _, l := range filter(entries, "old version stopped") {
		how, _, _ := strings.Cut(l.fields["drained"], " after ")
		res.Drained[how]++
	}
	live := filter(entries, "version live")
	for i := 1; i < len(live) && i <= e.switches; i++ {
		res.Live = append(res.Live, live[i].at)
	}
	for _, b := range res.behaviours() {
		c := res.Counts[b]
		firstNew, lastOld := res.switchTimes(b)
		e.logf("  %-8s sent %d ok %d failed %d %v closed %d; versions %s; new version's first answer: %s; old version's last answer ended: %s",
			b, c.Sent, c.OK, c.Failed, c.FailedBy, c.Closed, versionCounts(c.Versions),
			afterSwitch(firstNew, len(res.Switches)), afterSwitch(lastOld, len(res.Switches)))
		for _, f := range c.Failures {
			e.logf("    %s", f)
		}
	}
	e.logf("  nginx reloads during the load: %d; old versions stopped: %v", res.Reloads, res.Drained)
	return res, nil
}

// versionCounts lists answers per version in version order, "v0=12 v1=30".
func versionCounts(vs map[string]int64) string {
	keys := slices.SortedFunc(maps.Keys(vs), func(a, b string) int {
		x, _ := strconv.Atoi(strings.TrimPrefix(a, "v"))
		y, _ := strconv.Atoi(strings.TrimPrefix(b, "v"))
		return x - y
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, vs[k])
	}
	return strings.Join(parts, " ")
}

// afterSwitch sums up times after switches: "median +0.8 ms, max +12.0 ms
// (9 of 10 switches)"; of is the number of switches.
func afterSwitch(ds []time.Duration, of int) string {
	if len(ds) == 0 {
		return fmt.Sprintf("none (0 of %d switches)", of)
	}
	return fmt.Sprintf("median %s, max %s (%d of %d switches)", signedMs(median(ds)), signedMs(slices.Max(ds)), len(ds), of)
}

// signedMs is ms with a sign: "+812.3 ms", "-40.0 ms".
func signedMs(d time.Duration) string {
	if d < 0 {
		return "-" + ms(-d)
	}
	return "+" + ms(d)
}

// waitPrefix polls GET / every interval until host answers 200 with a body
// that starts with prefix, and returns when that first answer arrived.
func waitPrefix(ctx context.Context, port int, host, prefix string, interval, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	var last string
	for {
		code, got, err := get(ctx, port, host)
		now := time.Now()
		if err == nil && code == 200 && strings.HasPrefix(got, prefix) {
			return now, nil
		}
		last = fmt.Sprintf("%d %q %v", code, got, err)
		if now.After(deadline) {
			return now, fmt.Errorf("host %s did not answer 200 %q… within %s (last: %s)", host, prefix, within, last)
		}
		if err := sleep(ctx, interval); err != nil {
			return now, err
		}
	}
}

// medianOf is the median with how many switches it covers, "+3.1 ms (4 of
// 5)"; maxOf the largest; "—" when there is none.
func medianOf(ds []time.Duration, of int) string {
	if len(ds) == 0 {
		return fmt.Sprintf("— (0 of %d)", of)
	}
	return fmt.Sprintf("%s (%d of %d)", signedMs(median(ds)), len(ds), of)
}

func maxOf(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	return signedMs(slices.Max(ds))
}

// drainedCounts says how the old versions were stopped, from keter's
// "old version stopped" lines.
func drainedCounts(m map[string]int) string {
	if len(m) == 0 {
		return "keter logged none"
	}
	var parts []string
	for _, how := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d drained=%s", m[how], how))
	}
	return strings.Join(parts, ", ")
}
