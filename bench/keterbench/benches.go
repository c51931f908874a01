package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/internal/freeport"
	"github.com/keter-systemd/keter/nginx"
)

// env is what every benchmark needs.
type env struct {
	throughputRounds int
	recoveryRounds   int
	keterBin         string
	app              []byte // the benchmark app's binary
	behaveApp        string // internal/behaveapp's binary
	warpApp          string // internal/warpapp's binary, for the cold start
	switches         int    // replacements of the behave app
	base             string // parent of every keter root
	deploys          int
	apps             int
	replaces         int
	wrkDur           time.Duration
	// round is one wrk run of a front door comparison (ab.go).
	round time.Duration
	// acmeHosts are new hosts timed to their first verified HTTPS answer.
	acmeHosts int
	logf      func(format string, args ...any)
}

// deployResult: rename into incoming/ → first 200 from the new version.
type deployResult struct {
	First     time.Duration   // the app's first deploy (not in the figures)
	Latencies []time.Duration // each replacement
	Steps     map[string][]time.Duration
	KeterDur  []time.Duration            // "version live" duration (keter's own clock)
	Notice    []time.Duration            // rename → keter's "unit started" journal line
	AfterLive []time.Duration            // keter's "version live" journal line → first 200
	Nginx     map[string][]time.Duration // "nginx reloaded" parts: test, signal, serving
}

func benchDeploy(ctx context.Context, e env) (res deployResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "deploy")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "deploy.bench.test"
	var renames []time.Time
	deploy := func(i int) (time.Duration, error) {
		msg := "v" + strconv.Itoa(i)
		b, err := makeBundle(e.app, host, msg)
		if err != nil {
			return 0, err
		}
		if err := stage(k.incoming(), "deploy", b); err != nil {
			return 0, err
		}
		at, err := publish(k.incoming(), "deploy")
		if err != nil {
			return 0, err
		}
		renames = append(renames, at)
		got, err := waitBody(ctx, k.port, host, msg, 2*time.Millisecond, 60*time.Second)
		return got.Sub(at), err
	}
	if res.First, err = deploy(0); err != nil {
		return res, err
	}
	for i := 1; i <= e.deploys; i++ {
		// Start each deploy from a quiet keter: the previous old version
		// drained and stopped.
		if _, err := k.waitLog(ctx, "old version stopped", i-1, 30*time.Second); err != nil {
			return res, err
		}
		lat, err := deploy(i)
		if err != nil {
			return res, err
		}
		res.Latencies = append(res.Latencies, lat)
		e.logf("  deploy %2d: %s", i, lat.Round(time.Microsecond))
	}
	entries, err := k.waitLog(ctx, "version live", e.deploys+1, 30*time.Second)
	if err != nil {
		return res, err
	}
	res.Steps = map[string][]time.Duration{}
	for _, l := range filter(entries, "version live")[1:] {
		d, _ := time.ParseDuration(l.fields["duration"])
		res.KeterDur = append(res.KeterDur, d)
		for _, part := range strings.Split(l.fields["steps"], ",") {
			name, val, ok := strings.Cut(part, "=")
			if d, err := time.ParseDuration(val); ok && err == nil {
				res.Steps[name] = append(res.Steps[name], d)
			}
		}
	}
	res.Nginx = map[string][]time.Duration{}
	reloads := filter(entries, "nginx reloaded")
	for _, l := range reloads[min(1, len(reloads)):] {
		for _, part := range []string{"test", "signal", "serving"} {
			if d, err := time.ParseDuration(l.fields[part]); err == nil {
				res.Nginx[part] = append(res.Nginx[part], d)
			}
		}
	}
	// rename → "unit started": how long keter took to notice, wait for the
	// bundle to settle, unpack and start the unit, on the journal's clock.
	started := filter(entries, "unit started")
	for i := 1; i < len(started) && i < len(renames); i++ {
		res.Notice = append(res.Notice, started[i].at.Sub(renames[i]))
	}
	live := filter(entries, "version live")
	for i := 1; i < len(live) && i < len(renames); i++ {
		res.AfterLive = append(res.AfterLive, renames[i].Add(res.Latencies[i-1]).Sub(live[i].at))
	}
	return res, nil
}

// replaceResult: the same wrk load without and with replacements, plus two
// runs that tell keter's switch apart from nginx's reload: the load with
// nginx reloads alone, and replacements under Connection: close load.
type replaceResult struct {
	Baseline, Replacing       wrkResult // keep-alive connections, as wrk does by default
	ReloadsOnly               wrkResult // keep-alive, nginx reloaded, no deploy
	ReplacingClose            wrkResult // Connection: close, replacements
	Replacements, Reloads     int
	ReplacementsClose         int
	StoppedUnderLoad          int // old versions stopped while the keep-alive load ran
	NginxReloadsDuringReplace int
}

func benchReplace(ctx context.Context, e env) (res replaceResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "replace")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "replace.bench.test"
	bundles := make([][]byte, 2*e.replaces+1)
	for i := range bundles {
		if bundles[i], err = makeBundle(e.app, host, "v"+strconv.Itoa(i)); err != nil {
			return res, err
		}
	}
	next := 0
	replace := func() error {
		msg := "v" + strconv.Itoa(next)
		if err := stage(k.incoming(), "replace", bundles[next]); err != nil {
			return err
		}
		if _, err := publish(k.incoming(), "replace"); err != nil {
			return err
		}
		next++
		_, err := waitBody(ctx, k.port, host, msg, 5*time.Millisecond, 60*time.Second)
		return err
	}
	if err := replace(); err != nil {
		return res, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", k.port)
	e.logf("  baseline: wrk %s without replacements", e.wrkDur)
	if res.Baseline, err = runWrk(ctx, 16, e.wrkDur, host, url, true); err != nil {
		return res, err
	}

	// A loaded run lasts as long as its changes take: wrk gets a long -d
	// and SIGINT once every old version has been stopped.
	underLoad := func(change func() error, n, stopped int, headers ...string) (wrkResult, int, time.Time, error) {
		w, err := startWrk(ctx, 16, 5*time.Minute, host, url, true, headers...)
		if err != nil {
			return wrkResult{}, 0, time.Time{}, err
		}
		defer w.stop()
		sleep(ctx, 500*time.Millisecond)
		done := 0
		for ; done < n; done++ {
			if err := change(); err != nil {
				return wrkResult{}, done, time.Time{}, err
			}
		}
		if _, err := k.waitLog(ctx, "old version stopped", stopped, 60*time.Second); err != nil {
			return wrkResult{}, done, time.Time{}, err
		}
		sleep(ctx, 500*time.Millisecond)
		end := time.Now()
		w.stop()
		r, err := w.wait()
		return r, done, end, err
	}

	entries, err := k.journal(ctx)
	if err != nil {
		return res, err
	}
	reloads0 := count(entries, "nginx reloaded")
	e.logf("  %d replacements under keep-alive load", e.replaces)
	var end time.Time
	if res.Replacing, res.Replacements, end, err = underLoad(replace, e.replaces, e.replaces); err != nil {
		return res, err
	}
	if entries, err = k.journal(ctx); err != nil {
		return res, err
	}
	res.NginxReloadsDuringReplace = count(entries, "nginx reloaded") - reloads0
	for _, l := range filter(entries, "old version stopped") {
		if l.at.Before(end) {
			res.StoppedUnderLoad++
		}
	}

	// Control: one nginx reload per replacement (what switching by reload
	// costs), paced like the replacements, with no deploy at all.
	pace := res.Replacing.Duration / time.Duration(e.replaces+2)
	reload := func() error {
		if _, err := command(ctx, "systemctl", "reload", nginxUnit); err != nil {
			return err
		}
		return sleep(ctx, pace)
	}
	e.logf("  control: %d nginx reloads alone under keep-alive load", e.replaces)
	if res.ReloadsOnly, res.Reloads, _, err = underLoad(reload, e.replaces, e.replaces); err != nil {
		return res, err
	}
	e.logf("  %d replacements under Connection: close load", e.replaces)
	if res.ReplacingClose, res.ReplacementsClose, _, err = underLoad(replace, e.replaces, 2*e.replaces, "Connection: close"); err != nil {
		return res, err
	}
	return res, nil
}

// throughputResult: wrk -c32 against the app directly, through keter's
// nginx, and through a plain nginx with a minimal keep-alive proxy config
// (the reference issue 5 quotes), in alternating rounds (ab.go).
type throughputResult struct {
	Direct, Proxied, Plain []wrkResult
	// The A/B of bounding kept upstream connections by time: the plain
	// nginx with keter's bounds (KeterKeepalive, the upstream directives
	// keter's nginx renders for a mapped upstream).
	PlainKeter     []wrkResult
	KeterKeepalive string
}

// keterKeepalive is the upstream keep-alive bound keter's nginx renders
// for a mapped upstream (nginx.UpstreamKeepaliveTime and -Timeout), as
// nginx directives.
func keterKeepalive() string {
	return fmt.Sprintf("keepalive_time %dms; keepalive_timeout %dms;",
		nginx.UpstreamKeepaliveTime.Milliseconds(), nginx.UpstreamKeepaliveTimeout.Milliseconds())
}

func (r throughputResult) Ratio() float64 { return sumRPS(r.Proxied) / sumRPS(r.Direct) }

// ratios are a/b round by round.
func ratios(a, b []wrkResult) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		out = append(out, a[i].RPS()/b[i].RPS())
	}
	return out
}

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// VsPlain is the median of keter's nginx / plain nginx over the rounds.
func (r throughputResult) VsPlain() float64 { return medianF(ratios(r.Proxied, r.Plain)) }

func sumRPS(rs []wrkResult) float64 {
	var sum float64
	for _, r := range rs {
		sum += r.RPS()
	}
	return sum
}

// startPlainNginx runs nginx with the smallest keep-alive proxy config in
// front of the app, outside keter, and returns its port and a stop func.
func startPlainNginx(ctx context.Context, dir string, appPort int, upstreamExtra string) (int, func(), error) {
	return startPlainNginxWith(ctx, dir, appPort, upstreamExtra, "", "")
}

// startPlainNginxWith is startPlainNginx with more directives at http
// level and for its server block. The plain nginx runs as a transient
// unit, as keter's nginx does: a child of keterbench would share wrk's
// session, hence its scheduler autogroup, and on a loaded machine the
// CPU split between the groups, not nginx, made much of the difference
// (keter's own config run as a child of keterbench: 0.89 of it run by
// systemd; as a unit: 1.04, frontab.go).
func startPlainNginxWith(ctx context.Context, dir string, appPort int, upstreamExtra, httpExtra, serverExtra string) (int, func(), error) {
	port, err := freeport.Get()
	if err != nil {
		return 0, nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return 0, nil, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %s/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 10000;
    upstream app { server 127.0.0.1:%d; keepalive 64;%s }
    %s
    server {
        listen 127.0.0.1:%d;
%s        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }
    }
}
`, dir, appPort, upstreamExtra, httpExtra, port, serverExtra)
	stop, err := startNginxConf(ctx, dir, conf)
	if err != nil {
		return 0, nil, fmt.Errorf("starting plain nginx: %w", err)
	}
	return port, stop, nil
}

var portsRE = regexp.MustCompile(`\d+`)

func benchThroughput(ctx context.Context, e env) (res throughputResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "throughput")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "throughput.bench.test"
	b, err := makeBundle(e.app, host, "hello")
	if err != nil {
		return res, err
	}
	if err := stage(k.incoming(), "throughput", b); err != nil {
		return res, err
	}
	if _, err := publish(k.incoming(), "throughput"); err != nil {
		return res, err
	}
	if _, err := waitBody(ctx, k.port, host, "hello", 5*time.Millisecond, 60*time.Second); err != nil {
		return res, err
	}
	entries, err := k.waitLog(ctx, "version live", 1, 30*time.Second)
	if err != nil {
		return res, err
	}
	appPort, err := strconv.Atoi(portsRE.FindString(filter(entries, "version live")[0].fields["ports"]))
	if err != nil {
		return res, errors.New("keter's log names no port for the app")
	}
	// The app answers directly too (the figure's denominator).
	if _, err := waitBody(ctx, appPort, host, "hello", 5*time.Millisecond, 5*time.Second); err != nil {
		return res, err
	}
	res.KeterKeepalive = keterKeepalive()
	plain := map[string]int{}
	for _, v := range []struct{ name, extra string }{{"plain-nginx", ""}, {"plain-nginx-keter", " " + res.KeterKeepalive}} {
		port, stop, err := startPlainNginx(ctx, filepath.Join(e.base, v.name), appPort, v.extra)
		if err != nil {
			return res, err
		}
		defer stop()
		if _, err := waitBody(ctx, port, host, "hello", 5*time.Millisecond, 10*time.Second); err != nil {
			return res, fmt.Errorf("%s: %w", v.name, err)
		}
		plain[v.name] = port
	}
	if err := scheduleAllAlike(ctx, e, plainUnit(filepath.Join(e.base, "plain-nginx")), plainUnit(filepath.Join(e.base, "plain-nginx-keter"))); err != nil {
		return res, err
	}
	app, err := appUnit(ctx)
	if err != nil {
		return res, err
	}
	units := func(nginx string) map[string]string { return map[string]string{"nginx": nginx, "app": app} }
	err = alternate(ctx, e, []contender{
		{"", appPort, &res.Direct, map[string]string{"app": app}}, {host, k.port, &res.Proxied, units(nginxUnit)},
		{host, plain["plain-nginx"], &res.Plain, units(plainUnit(filepath.Join(e.base, "plain-nginx")))},
		{host, plain["plain-nginx-keter"], &res.PlainKeter, units(plainUnit(filepath.Join(e.base, "plain-nginx-keter")))},
	}, func(round int) {
		e.logf("  round %d: direct %.0f, keter %.0f, plain %.0f, plain+keter's %q %.0f req/s: keter/plain %.3f, keter's-bounds/plain %.3f",
			round+1, res.Direct[round].RPS(), res.Proxied[round].RPS(), res.Plain[round].RPS(), res.KeterKeepalive, res.PlainKeter[round].RPS(),
			res.Proxied[round].RPS()/res.Plain[round].RPS(), res.PlainKeter[round].RPS()/res.Plain[round].RPS())
	})
	if err != nil {
		return res, err
	}
	e.logf("  keter/plain %s", spread(res.Proxied, res.Plain))
	e.logf("  CPU: direct %s; keter %s; plain %s; plain+bounds %s", cpuPerRequest(res.Direct), cpuPerRequest(res.Proxied), cpuPerRequest(res.Plain), cpuPerRequest(res.PlainKeter))
	return res, nil
}

// rssSample is keter's VmRSS some time after every app served.
type rssSample struct {
	After time.Duration
	RSSKB int64
}

// scaleResult: many apps dropped at once until every one answers.
type scaleResult struct {
	Apps            int
	AllServing      time.Duration // first rename → last app's first 200
	LastLive        time.Duration // first rename → keter's last "version live"
	Reloads         int           // "nginx reloaded" while the apps came up
	IdleRSSKB       int64         // keter before the drop, no apps
	RSSKB, HWMKB    int64         // keter 2 s after all served
	RSSLater        []rssSample   // and later, as the Go runtime returns memory
	AnonKB, Threads int64         // at the last sample: anonymous RSS, OS threads
	GCLines         []string      // keter's GODEBUG=gctrace=1 lines
	CPU             time.Duration // keter's CPU from the drop to 2 s after
	AppUnitsRunning int
}

func benchScale(ctx context.Context, e env) (res scaleResult, err error) {
	// gctrace puts one line per Go GC in keter's journal: it tells live heap
	// from memory the runtime has not yet given back.
	keterEnv = append(keterEnv, "GODEBUG=gctrace=1")
	k, err := startKeter(ctx, e.keterBin, e.base, "scale")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	res.Apps = e.apps
	names := make([]string, e.apps)
	for i := range names {
		names[i] = fmt.Sprintf("app%03d", i)
		b, err := makeBundle(e.app, names[i]+".bench.test", names[i])
		if err != nil {
			return res, err
		}
		if err := stage(k.incoming(), names[i], b); err != nil {
			return res, err
		}
	}
	sleep(ctx, time.Second) // let keter settle after start-up before reading "idle"
	pid, err := k.mainPID(ctx)
	if err != nil {
		return res, err
	}
	before, err := readProc(pid)
	if err != nil {
		return res, err
	}
	res.IdleRSSKB = before.rssKB
	entries, err := k.journal(ctx)
	if err != nil {
		return res, err
	}
	reloads0 := count(entries, "nginx reloaded")

	var t0 time.Time
	for i, n := range names {
		at, err := publish(k.incoming(), n)
		if err != nil {
			return res, err
		}
		if i == 0 {
			t0 = at
		}
	}
	// Sweep the hosts not yet serving every 10 ms, one request each, so
	// the poller does not compete with keter for the CPU.
	pending := slices.Clone(names)
	deadline := time.Now().Add(3 * time.Minute)
	var last time.Time
	for len(pending) > 0 {
		var still []string
		for _, n := range pending {
			code, body, err := get(ctx, k.port, n+".bench.test")
			if err == nil && code == 200 && body == n {
				last = time.Now()
				continue
			}
			still = append(still, n)
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			// Say what keter logged about them.
			var why []string
			if entries, err := k.journal(ctx); err == nil {
				for _, l := range entries {
					if slices.Contains(pending, l.fields["app"]) {
						why = append(why, l.raw)
					}
				}
			}
			return res, fmt.Errorf("%d of %d apps not serving after 3 minutes: %v; keter's log about them:\n%s",
				len(pending), e.apps, pending[:min(5, len(pending))], strings.Join(why[max(0, len(why)-10):], "\n"))
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.AllServing = last.Sub(t0)
	e.logf("  all %d apps serving after %s", e.apps, res.AllServing.Round(time.Millisecond))
	sleep(ctx, 2*time.Second)
	after, err := readProc(pid)
	if err != nil {
		return res, err
	}
	res.RSSKB, res.HWMKB, res.CPU = after.rssKB, after.hwmKB, after.cpu-before.cpu
	if now, err := k.mainPID(ctx); err != nil || now != pid {
		return res, fmt.Errorf("keter restarted during the scale run (pid %d, now %d, %v)", pid, now, err)
	}
	if entries, err = k.journal(ctx); err != nil {
		return res, err
	}
	res.Reloads = count(entries, "nginx reloaded") - reloads0
	for _, at := range []time.Duration{10 * time.Second, 30 * time.Second, 150 * time.Second} {
		sleep(ctx, time.Until(last.Add(at)))
		if p, err := readProc(pid); err == nil {
			res.RSSLater = append(res.RSSLater, rssSample{at, p.rssKB})
			res.AnonKB, res.Threads = p.anonKB, p.threads
			e.logf("  keter RSS %s after all served: %s", at, mb(p.rssKB))
		}
	}
	live := filter(entries, "version live")
	if len(live) > 0 {
		res.LastLive = live[len(live)-1].at.Sub(t0)
	}
	out, _ := command(ctx, "systemctl", "list-units", "--plain", "--no-legend", "--state=active", "keter-app-*")
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) != "" {
			res.AppUnitsRunning++
		}
	}
	if out, err := command(ctx, "journalctl", "-u", k.unit, "-o", "cat", "--no-pager", "-g", "^gc [0-9]"); err == nil {
		res.GCLines = strings.Split(strings.TrimSpace(out), "\n")
		e.logf("  keter's Go GCs: %d; last: %s", len(res.GCLines), res.GCLines[len(res.GCLines)-1])
	}
	e.logf("  stopping %d app units", res.AppUnitsRunning)
	return res, nil
}

// restartResult: SIGKILL keter under load, systemd restarts it.
type restartResult struct {
	Load           wrkResult
	Ready          time.Duration // kill → "keter ready" in the journal
	Starting       time.Duration // kill → "keter starting" (systemd's RestartSec is in here)
	AppPIDSame     bool
	KeterPIDBefore int
	KeterPIDAfter  int
}

func benchRestart(ctx context.Context, e env) (res restartResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "restart")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "restart.bench.test"
	b, err := makeBundle(e.app, host, "alive")
	if err != nil {
		return res, err
	}
	if err := stage(k.incoming(), "restart", b); err != nil {
		return res, err
	}
	if _, err := publish(k.incoming(), "restart"); err != nil {
		return res, err
	}
	if _, err := waitBody(ctx, k.port, host, "alive", 5*time.Millisecond, 60*time.Second); err != nil {
		return res, err
	}
	entries, err := k.waitLog(ctx, "unit started", 1, 30*time.Second)
	if err != nil {
		return res, err
	}
	appUnit := filter(entries, "unit started")[0].fields["unit"]
	appPID, err := unitPID(ctx, appUnit)
	if err != nil {
		return res, err
	}
	if res.KeterPIDBefore, err = k.mainPID(ctx); err != nil {
		return res, err
	}
	w, err := startWrk(ctx, 16, e.wrkDur, host, fmt.Sprintf("http://127.0.0.1:%d/", k.port), true)
	if err != nil {
		return res, err
	}
	defer w.stop()
	sleep(ctx, e.wrkDur/3)
	killAt := time.Now()
	if _, err := command(ctx, "systemctl", "kill", "--signal=KILL", "--kill-whom=main", k.unit); err != nil {
		return res, err
	}
	entries, err = k.waitLog(ctx, "keter ready", 2, 60*time.Second)
	if err != nil {
		return res, err
	}
	for _, l := range entries {
		if l.at.Before(killAt) {
			continue
		}
		if l.msg == "keter starting" && res.Starting == 0 {
			res.Starting = l.at.Sub(killAt)
		}
		if l.msg == "keter ready" && res.Ready == 0 {
			res.Ready = l.at.Sub(killAt)
		}
	}
	if res.Load, err = w.wait(); err != nil {
		return res, err
	}
	if res.KeterPIDAfter, err = k.mainPID(ctx); err != nil {
		return res, err
	}
	now, err := unitPID(ctx, appUnit)
	res.AppPIDSame = err == nil && now == appPID
	return res, nil
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// percentile by the nearest-rank method.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100
	return s[max(rank-1, 0)]
}
