package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keter-systemd/keter/nginx"
)

// results collects every benchmark's outcome; nil means not run.
// It is saved as JSON between runs, one sandbox per benchmark.
type results struct {
	Command           string
	Started, Finished time.Time
	Machine           machine

	Deploy     *outcome[deployResult]     `json:",omitempty"`
	Replace    *outcome[replaceResult]    `json:",omitempty"`
	Throughput *outcome[throughputResult] `json:",omitempty"`
	Scale      *outcome[scaleResult]      `json:",omitempty"`
	Restart    *outcome[restartResult]    `json:",omitempty"`
	Unpack     *outcome[unpackResult]     `json:",omitempty"`
	Status     *outcome[statusResult]     `json:",omitempty"`
	ACME       *outcome[acmeResult]       `json:",omitempty"`
	Recovery   *outcome[recoveryResult]   `json:",omitempty"`
	Instances  *outcome[instancesResult]  `json:",omitempty"`
	Behaviours *outcome[behavioursResult] `json:",omitempty"`
	Gzip       *outcome[gzipResult]       `json:",omitempty"`
	Hosts      *outcome[hostsResult]      `json:",omitempty"`
	ColdStart  *outcome[coldResult]       `json:",omitempty"`
	Access     *outcome[accessResult]     `json:",omitempty"`
	Canary     *outcome[canaryResult]     `json:",omitempty"`
	Thousand   *outcome[thousandResult]   `json:",omitempty"`
	Reboot     *outcome[rebootResult]     `json:",omitempty"`
}

// Goals from issues 5, 6 and 10.
const (
	goalDeploy     = 250 * time.Millisecond
	goalThroughput = 0.97      // of a plain keep-alive nginx, median of the rounds
	goalRSSKB      = 25 * 1024 // issue 27 (issue 10: 30 MB)
)

// row is one line of the summary table.
type row struct{ bench, figure, goal, verdict string }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
func mb(kb int64) string          { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func (r *results) rows() []row {
	var rows []row
	failed := func(bench, err string) {
		rows = append(rows, row{bench, "did not finish: " + err, "", "FAILED"})
	}
	if o := r.Deploy; o != nil {
		if o.Err != "" {
			failed("1. deploy latency", o.Err)
		} else {
			d := o.V
			med, p90 := median(d.Latencies), percentile(d.Latencies, 90)
			v := verdict(med < goalDeploy)
			if med < goalDeploy && p90 >= goalDeploy {
				v = "met (median); p90 MISSED"
			}
			rows = append(rows, row{"1. deploy latency (rename → first 200 of new version)",
				fmt.Sprintf("median %s, p90 %s over %d replacements; %.1f× faster than the quoted ~2.0 s of Haskell Keter",
					secs(med), secs(p90), len(d.Latencies), (2*time.Second).Seconds()/med.Seconds()),
				"< 0.25 s", v})
		}
	}
	if o := r.Replace; o != nil {
		if o.Err != "" {
			failed("2. replace under load", o.Err)
		} else {
			x := o.V
			rows = append(rows,
				row{"2. replace under load: failed requests (wrk, keep-alive)",
					fmt.Sprintf("%d failed (%s) of %d requests during %d replacements; control: %d failed (%s) for %d nginx reloads with no deploy",
						x.Replacing.Failed(), x.Replacing.breakdown(), x.Replacing.Requests, x.Replacements,
						x.ReloadsOnly.Failed(), x.ReloadsOnly.breakdown(), x.Reloads),
					"0", verdict(x.Replacing.Failed() == 0)},
				row{"2. replace under load: failed requests (wrk, Connection: close)",
					fmt.Sprintf("%d failed (%s) of %d requests during %d replacements",
						x.ReplacingClose.Failed(), x.ReplacingClose.breakdown(), x.ReplacingClose.Requests, x.ReplacementsClose),
					"0", verdict(x.ReplacingClose.Failed() == 0)},
				row{"2. replace under load: p99 latency (keep-alive)",
					fmt.Sprintf("%.2f× the p99 without replacements (%s vs %s)",
						x.Replacing.P99.Seconds()/x.Baseline.P99.Seconds(), ms(x.Replacing.P99), ms(x.Baseline.P99)),
					"(none stated)", "—"})
		}
	}
	if o := r.Throughput; o != nil {
		if o.Err != "" {
			failed("3. front door throughput", o.Err)
		} else {
			t := o.V
			n := float64(len(t.Direct))
			rows = append(rows, row{fmt.Sprintf("3. front door throughput: keter's nginx / a plain keep-alive nginx, median of %d alternating rounds of %s (32 connections)", len(t.Direct), t.Direct[0].Duration.Round(time.Second)),
				fmt.Sprintf("%s; keter's nginx %.0f req/s, plain nginx %.0f req/s, direct %.0f req/s (keter %.2f of direct)%s",
					spread(t.Proxied, t.Plain), sumRPS(t.Proxied)/n, sumRPS(t.Plain)/n, sumRPS(t.Direct)/n, t.Ratio(), workRatio(t.Proxied, t.Plain)),
				"≥ 0.97", verdict(t.VsPlain() >= goalThroughput)})
			rows = append(rows, row{"3. A/B: a plain nginx bounding kept upstream connections by time, / the plain nginx (median)",
				fmt.Sprintf("keter's `%s`: %s", t.KeterKeepalive, spread(t.PlainKeter, t.Plain)),
				"", ""})
		}
	}
	if o := r.Scale; o != nil {
		if o.Err != "" {
			failed("4. scale", o.Err)
		} else {
			s := o.V
			rows = append(rows,
				row{fmt.Sprintf("4. scale: %d apps dropped at once → all serving", s.Apps),
					fmt.Sprintf("%s (%s per app)", secs(s.AllServing), ms(s.AllServing/time.Duration(s.Apps))),
					"(none stated)", "—"},
				row{"4. scale: nginx reloads",
					fmt.Sprintf("%d reloads for %d apps (%.2f per app)", s.Reloads, s.Apps, float64(s.Reloads)/float64(s.Apps)),
					"a few, not one per app", "—"},
				row{"4. scale: keter RSS with the apps live",
					fmt.Sprintf("%s 2 s after all served%s (peak %s; %s idle before the drop)", mb(s.RSSKB), s.later(), mb(s.HWMKB), mb(s.IdleRSSKB)),
					"< 25 MB", s.rssVerdict()},
				row{"4. scale: keter CPU",
					fmt.Sprintf("%.2f s of CPU for %d deploys (%s per app)", s.CPU.Seconds(), s.Apps, ms(s.CPU/time.Duration(s.Apps))),
					"(none stated)", "—"})
		}
	}
	if o := r.Restart; o != nil {
		if o.Err != "" {
			failed("5. keter restart", o.Err)
		} else {
			x := o.V
			rows = append(rows,
				row{"5. keter SIGKILLed under load: failed requests",
					fmt.Sprintf("%d failed (%s) of %d requests; app process %s", x.Load.Failed(), x.Load.breakdown(), x.Load.Requests, map[bool]string{true: "unchanged", false: "CHANGED"}[x.AppPIDSame]),
					"0", verdict(x.Load.Failed() == 0)},
				row{"5. keter SIGKILLed: until keter ready again",
					fmt.Sprintf("%s (restarted by systemd after %s, incl. RestartSec=100ms)", secs(x.Ready), secs(x.Starting)),
					"(none stated)", "—"})
		}
	}
	if o := r.Unpack; o != nil {
		if o.Err != "" {
			failed("6. unpack", o.Err)
		} else {
			u := o.V
			rows = append(rows, row{fmt.Sprintf("6. unpack %d MB bundle: bundle.Unpack / tar xzf", u.Unpacked/1e6),
				fmt.Sprintf("%.2f× the speed of tar xzf (%.0f MB/s vs %.0f MB/s, medians of %d runs)",
					u.mbps(u.Keter)/u.mbps(u.Tar), u.mbps(u.Keter), u.mbps(u.Tar), len(u.Keter)),
				"(none stated)", "—"})
		}
	}
	if o := r.Status; o != nil {
		if o.Err != "" {
			failed("7. status and metrics", o.Err)
		} else {
			rows = append(rows, o.V.rows()...)
		}
	}
	rows = append(rows, r.acmeRows()...)
	if o := r.Recovery; o != nil {
		if o.Err != "" {
			failed("9. crash recovery", o.Err)
		} else {
			x := o.V
			rows = append(rows,
				row{fmt.Sprintf("9. app SIGKILLed → served again through nginx (median of %d)", len(x.Crash)),
					fmt.Sprintf("%s (each: %s)", secs(median(x.Crash)), joinDur(x.Crash)), "< 0.5 s", verdict(len(x.Crash) >= 5 && median(x.Crash) < 500*time.Millisecond)},
				row{fmt.Sprintf("9. managed nginx SIGKILLed under load → served again by a new master (median of %d)", len(x.Nginx)),
					fmt.Sprintf("%s (each: %s); keter logged %d restarts", secs(median(x.Nginx)), joinDur(x.Nginx), x.NginxRestartsLogged), "< 1 s, each", verdict(len(x.Nginx) > 0 && slices.Max(x.Nginx) < time.Second)})
		}
	}
	if o := r.ColdStart; o != nil {
		if o.Err != "" {
			failed("14. cold start", o.Err)
		} else {
			rows = append(rows, o.V.rows()...)
		}
	}
	if o := r.Instances; o != nil {
		if o.Err != "" {
			failed("10. instances", o.Err)
		} else {
			x := o.V
			rows = append(rows, row{fmt.Sprintf("10. instances: a single-threaded app, 2 ms CPU per request: req/s with `instances: 2` / `instances: 1`, median of %d alternating rounds", len(x.One)),
				fmt.Sprintf("%.2f× (rounds: %s); %.0f vs %.0f req/s", x.Gain(), joinF(ratios(x.Two, x.One)), sumRPS(x.Two)/float64(len(x.Two)), sumRPS(x.One)/float64(len(x.One))),
				"≥ 1.6×", verdict(len(x.One) >= 3 && x.Gain() >= 1.6)})
		}
	}
	if o := r.Gzip; o != nil {
		if o.Err != "" {
			failed("12. gzip", o.Err)
		} else {
			rows = append(rows, o.V.row())
		}
	}
	if o := r.Behaviours; o != nil {
		if o.Err != "" {
			failed("11. every kind of app across switches", o.Err)
		} else {
			x := o.V
			failed, sent := x.failed()
			var per []string
			for _, b := range x.behaviours() {
				per = append(per, fmt.Sprintf("%s %d/%d", b, x.Counts[b].Failed, x.Counts[b].Sent))
			}
			rows = append(rows, row{fmt.Sprintf("11. every kind of app (behaveapp: one write, two writes, stream, SSE, 20 MiB download, long poll, WebSocket; GET and POST) across %d switches under a strict client: failed requests, nginx reloads", len(x.Switches)),
				fmt.Sprintf("%d failed of %d requests (failed/sent: %s); %d nginx reloads", failed, sent, strings.Join(per, ", "), x.Reloads),
				"0 failed, 0 reloads", verdict(failed == 0 && x.Reloads == 0)})
		}
	}
	rows = append(rows, r.hostsRows()...)
	rows = append(rows, r.accessRows()...)
	if o := r.Canary; o != nil {
		if o.Err != "" {
			failed("16. canary split accuracy", o.Err)
		} else {
			rows = append(rows, canaryRow(o.V))
		}
	}
	if o := r.Thousand; o != nil {
		if o.Err != "" {
			failed("17. a thousand apps", o.Err)
		} else {
			rows = append(rows, o.V.rows()...)
		}
	}
	if o := r.Reboot; o != nil {
		if o.Err != "" {
			failed("18. host reboot", o.Err)
		} else {
			rows = append(rows, o.V.rows()...)
		}
	}
	return rows
}

func (r *results) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keter benchmarks: %d cores, %s, load average %s at start, %s at end\n\n",
		r.Machine.Cores, r.Started.Format("2006-01-02 15:04 MST"), r.Machine.LoadInit, r.Machine.LoadEnd)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tFIGURE\tGOAL\tVERDICT")
	for _, x := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.bench, x.figure, x.goal, x.verdict)
	}
	tw.Flush()
	return b.String()
}

func (r *results) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	m := r.Machine
	p("# keter benchmarks")
	p("")
	p("Written by `%s` (bench/run.sh → bench/keterbench) on %s for keter %s; the run took %s.",
		r.Command, r.Started.Format("2006-01-02 15:04 MST"), m.Keter, r.Finished.Sub(r.Started).Round(time.Second))
	p("Rerun it to refresh this file: `make bench` as root on Debian 12 (it installs what it needs with")
	p("scripts/deps.sh, builds keter and a minimal Go app, boots the sandbox systemd, runs a real keter")
	p("with a real managed nginx on loopback, and tears everything down).")
	p("")
	p("**Machine:** %d cores (%s), kernel %s, %s, %s, Go %s. Load average %s at the start and %s at the end:",
		m.Cores, m.CPU, m.Kernel, m.Nginx, m.Wrk, m.GoVersion, m.LoadInit, m.LoadEnd)
	p("this is a shared VM, so absolute times are noisy; the ratios and counts are the figures to compare.")
	p("wrk (2 threads), nginx, keter and the app all share these %d cores.", m.Cores)
	p("")
	p("| benchmark | figure | goal | verdict |")
	p("|---|---|---|---|")
	for _, x := range r.rows() {
		p("| %s | %s | %s | %s |", x.bench, strings.ReplaceAll(x.figure, "|", "/"), x.goal, x.verdict)
	}
	p("")
	var missed []string
	for _, x := range r.rows() {
		if strings.Contains(x.verdict, "MISSED") || x.verdict == "FAILED" {
			missed = append(missed, x.bench)
		}
	}
	if len(missed) > 0 {
		p("**Goals missed in this run:** %s. See the details below for where the time goes.", strings.Join(missed, "; "))
	} else {
		p("Every goal with a number was met in this run.")
	}
	p("")
	p("## Haskell Keter, for comparison (quoted from the issues, not measured by us)")
	p("")
	p("These figures are quoted as stated in issues 5, 6 and 10 (\"here\" = 2 cores, minimal Go app); this")
	p("benchmark does not run the Haskell Keter.")
	p("")
	p("- Deploy latency: about 2.0 s (it sleeps 2 s before its first check). Issues 6 and 10.")
	p("- Front door: Keter's own proxy about 0.15 of direct; plain nginx with a keepalive upstream about 0.58 of direct. Issues 5 and 10.")
	p("- Memory: the Haskell Keter idles at about 29 MB RSS with no apps. Issue 6.")
	p("")
	p("## Details")
	r.details(p)
	p("")
	p("## Method")
	p("")
	p("- Each benchmark starts its own keter as a transient `Type=notify` unit of the sandbox systemd")
	p("  (`Restart=always RestartSec=100ms KillMode=process`, as e2e/harness_test.go does), with")
	p("  `nginx: {mode: managed}` and `graceful-drain-micros: 1000000`, and stops it, its nginx and its")
	p("  apps afterwards. keter's app ports come from `port-manager: {ranges: [{from: %d, to: %d}]}`,", appPortsFrom, appPortsTo)
	p("  outside Linux's ephemeral port range (32768-60999). With Keter's default ranges, most of which")
	p("  lie inside it, 1 of the 100 apps of the scale benchmark failed its deploy in each of our first two")
	p("  runs with `bind: address already in use`: an outgoing connection (nginx to an upstream, a client)")
	p("  took the app's port between keter's probe and the app's bind.")
	p("- Apps are bench/app (a minimal Go HTTP server answering a fixed body),")
	p("  bundled in the flat format (`exec: ../bin/app`, `host`, `args: [--message, M]`); benchmark 11")
	p("  deploys internal/behaveapp the same way (`exec: ../bin/behaveapp`, `args: [--version, vN]`, `drain: 8s`).")
	p("- Bundles are dropped the way an operator's `mv` does: written to `incoming/.NAME.keter.tmp`,")
	p("  then renamed to `incoming/NAME.keter`; the clock starts just before the rename.")
	p("- Failed requests are responses other than 2xx (counted by bench/keterbench/wrk-count.lua)")
	p("  plus wrk's socket errors (connect, read, write, timeout; wrk --timeout 5s).")
	p("- The throughput runs use bench/keterbench/wrk-summary.lua, which has no response() callback")
	p("  so wrk stays on its fast path; direct and proxied runs alternate, and the ratio is the sum of")
	p("  the proxied rates over the sum of the direct ones.")
	p("- Timings inside keter come from its journal: `version live` carries `duration` (bundle event →")
	p("  live) and `steps` (wait = bundle stable + gzip check, unpack, start = unit started over D-Bus,")
	p("  ready = first good HTTP probe, switch = the new port in force: the port map switched, or")
	p("  nginx reloaded).")
	return b.String()
}

func (r *results) details(p func(string, ...any)) {
	if o := r.Deploy; o != nil && o.Err == "" {
		d := o.V
		p("")
		p("### 1. Deploy latency")
		p("")
		p("One app (`deploy.bench.test`) deployed once, then replaced %d times, one at a time, each after the", len(d.Latencies))
		p("previous old version had been stopped. A Go client polls `/` every 2 ms with the app's Host header")
		p("through nginx until the body is the new version's message.")
		p("")
		p("- First deploy of the app (not in the figures): %s.", secs(d.First))
		p("- Replacements, in order: %s.", joinDur(d.Latencies))
		p("- min %s, median %s, p90 %s, max %s.", secs(slices.Min(d.Latencies)), secs(median(d.Latencies)),
			secs(percentile(d.Latencies, 90)), secs(slices.Max(d.Latencies)))
		p("")
		p("Where the time goes (medians over the replacements, from keter's journal):")
		p("")
		p("| part | median | p90 |")
		p("|---|---|---|")
		if len(d.Notice) > 0 {
			p("| rename → keter logs `unit started` (noticing the file, then the steps before `start` included) | %s | %s |", ms(median(d.Notice)), ms(percentile(d.Notice, 90)))
		}
		for _, step := range []string{"wait", "unpack", "start", "ready", "switch"} {
			if ds := d.Steps[step]; len(ds) > 0 {
				p("| keter step `%s` | %s | %s |", step, ms(median(ds)), ms(percentile(ds, 90)))
			}
		}
		for _, part := range []struct{ key, what string }{
			{"test", "`nginx -t` of the new config"},
			{"signal", "the reload signal"},
			{"serving", "signal → nginx's new workers answer"},
		} {
			if ds := d.Nginx[part.key]; len(ds) > 0 {
				p("| within `switch`: %s | %s | %s |", part.what, ms(median(ds)), ms(percentile(ds, 90)))
			}
		}
		if len(d.KeterDur) > 0 {
			p("| keter's `duration` (its whole deploy, bundle event → live) | %s | %s |", ms(median(d.KeterDur)), ms(percentile(d.KeterDur, 90)))
			if len(d.AfterLive) > 0 {
				p("| keter logs `version live` → first 200 through nginx (negative: the 200 came first) | %s | %s |", ms(median(d.AfterLive)), ms(percentile(d.AfterLive, 90)))
			}
			p("| rename → first 200 (the figure) | %s | %s |", ms(median(d.Latencies)), ms(percentile(d.Latencies, 90)))
		}
		p("")
		if len(d.Nginx["test"]) == 0 {
			p("No replacement reloaded nginx: keter switched each by one update of its nftables port map")
			p("(under 1 ms) and logs `version live` right after it. keter closes no connection at a switch:")
			p("a request nginx sends on an upstream connection it kept from before the switch still reaches")
			p("the old version, until nginx retires that connection (when a finished request hands it back")
			p("older than `keepalive_time` %s, or after `keepalive_timeout` %s idle). So the first 200 from",
				nginx.UpstreamKeepaliveTime, nginx.UpstreamKeepaliveTimeout)
			p("the new version can follow `version live` by up to %s (the row above). The rest is keter's", nginx.SwitchBound)
			p("unpack (inflate-bound) and systemd's start of a sandboxed unit.")
		} else {
			p("What bounds it: the `switch` step is nginx's. keter tests the new config (`nginx -t`, about")
			p("30 ms) and sends SIGHUP; nginx's master then starts new workers and retires the old ones")
			p("only 100 ms later (`ngx_master_process_cycle`), and until then new connections keep reaching")
			p("the old workers: the first 200 from the new version comes about 100 ms after the signal.")
			p("keter then waits 130 ms more before it calls the version live, so that no new connection can")
			p("meet the old config; that wait comes after the first 200 and is not in the figure.")
		}
	}
	if o := r.Replace; o != nil && o.Err == "" {
		x := o.V
		p("")
		p("### 2. Replace under load")
		p("")
		p("`%s`", x.Baseline.Command)
		p("")
		p("First %s of load without replacements. Then the same load (stopped with SIGINT once done) while", x.Baseline.Duration.Round(time.Second))
		p("the app was replaced %d times back to back (each waits until the new body is served), until every", x.Replacements)
		p("old version had drained (no connection left, or its drain time: at least 1.3 s) and been stopped (%d of them while the load ran; nginx reloaded %d times).", x.StoppedUnderLoad, x.NginxReloadsDuringReplace)
		p("Two more runs separate keter's switch from nginx's reload: the same keep-alive load while")
		p("`systemctl reload` hits keter's nginx once per replacement (what switching by reload, keter's")
		p("fallback without nftables, costs), with no deploy at all; and %d replacements under", x.ReplacementsClose)
		p("a load that sends `Connection: close` (a new connection per request, so no request can meet a")
		p("keep-alive connection that a reloading nginx closes).")
		p("")
		p("| run | requests | req/s | failed | kinds | p50 | p90 | p99 | max |")
		p("|---|---|---|---|---|---|---|---|---|")
		for _, w := range []struct {
			name string
			r    wrkResult
		}{
			{"keep-alive, no change", x.Baseline},
			{fmt.Sprintf("keep-alive, %d replacements", x.Replacements), x.Replacing},
			{fmt.Sprintf("keep-alive, %d nginx reloads, no deploy", x.Reloads), x.ReloadsOnly},
			{fmt.Sprintf("Connection: close, %d replacements", x.ReplacementsClose), x.ReplacingClose},
		} {
			p("| %s (%s) | %d | %.0f | %d | %s | %s | %s | %s | %s |", w.name, w.r.Duration.Round(100*time.Millisecond), w.r.Requests, w.r.RPS(),
				w.r.Failed(), w.r.breakdown(), ms(w.r.P50), ms(w.r.P90), ms(w.r.P99), ms(w.r.Max))
		}
		p("")
		p("wrk counts a `read` error when the server closes a keep-alive connection as the next request is")
		p("sent; an nginx reload does this to idle keep-alive connections of its old workers. HTTP/1.1")
		p("lets a server close an idle connection at any time and lets clients retry idempotent requests on")
		p("it (browsers and Go's net/http do; wrk does not). So read the keep-alive replacement run next to the")
		p("reload-only control (failures that happen there too come from nginx reloading) and the")
		p("Connection: close run (failures there would be requests keter's switch itself lost).")
	}
	if o := r.Throughput; o != nil && o.Err == "" {
		t := o.V
		p("")
		p("### 3. Front door throughput")
		p("")
		p("- direct: `%s`", t.Direct[0].Command)
		p("- keter's nginx: `%s`", t.Proxied[0].Command)
		p("- plain nginx: `%s`", t.Plain[0].Command)
		p("")
		p("The plain nginx is started by the benchmark with the smallest keep-alive proxy config")
		p("(`worker_processes auto`, `access_log off`, upstream `keepalive 64`, HTTP/1.1, `Connection \"\"`).")
		p("It shows what nginx itself can do on this machine at this moment. It runs as a transient unit, as")
		p("keter's nginx does (a child of the benchmark would share wrk's scheduler group). Each round runs")
		p("each front door once, the order rotating round by round; the figure is the median of the per-round")
		p("ratios. keter's config differs from it in what keter needs (forwarded headers, WebSocket")
		p("upgrade, timeouts) and, with the port map, in `%s` on the upstream: keter", t.KeterKeepalive)
		p("closes no connection at a switch; nginx itself retires a kept connection to the old version when")
		p("a finished request hands it back older than `keepalive_time` or when it has sat idle for")
		p("`keepalive_timeout`, so no request starts on the old version later than their sum after the")
		p("switch. The one more plain nginx run is the A/B of bounding kept connections by time: the same")
		p("plain config with keter's `%s`.", t.KeterKeepalive)
		p("")
		p("| round | direct | keter's nginx | plain nginx | plain, keter's bounds | keter / plain | keter's bounds / plain |")
		p("|---|---|---|---|---|---|---|")
		for i := range min(len(t.Direct), len(t.Proxied), len(t.Plain), len(t.PlainKeter)) {
			d, x, n, k := t.Direct[i], t.Proxied[i], t.Plain[i], t.PlainKeter[i]
			p("| %d | %.0f | %.0f | %.0f | %.0f | %.3f | %.3f |", i+1, d.RPS(), x.RPS(), n.RPS(), k.RPS(), x.RPS()/n.RPS(), k.RPS()/n.RPS())
		}
		p("")
		p("(requests per second)")
	}
	if o := r.Scale; o != nil && o.Err == "" {
		s := o.V
		p("")
		p("### 4. Scale")
		p("")
		p("%d bundles written to `incoming/.*.tmp` first, then renamed one after another as fast as the", s.Apps)
		p("kernel allows; a single client sweeps the hosts still pending every 10 ms.")
		p("")
		p("- First rename → last app's first 200: %s; → keter's last `version live` line: %s.", secs(s.AllServing), secs(s.LastLive))
		p("- nginx reloads (`nginx reloaded` lines) while they came up: %d.", s.Reloads)
		p("- keter RSS (VmRSS) 2 s after all served: %s%s; peak (VmHWM) %s; before the drop %s. The verdict uses the last sample.",
			mb(s.RSSKB), s.later(), mb(s.HWMKB), mb(s.IdleRSSKB))
		if n := len(s.GCLines); n > 0 {
			p("- keter ran with `GODEBUG=gctrace=1`: %d Go GCs from its start to the last sample; the last one:", n)
			p("  `%s`", s.GCLines[n-1])
			p("  (`A->B->C MB` = heap at start of GC, at end, live after; then the goal for the next GC).")
		}
		p("- At the last sample, %s of keter's RSS is anonymous memory (Go heap and stacks, not the mapped binary); keter has %d OS threads.", mb(s.AnonKB), s.Threads)
		p("- keter CPU (utime+stime) from the drop to 2 s after all served: %.2f s on %d cores.", s.CPU.Seconds(), r.Machine.Cores)
		p("- App units active afterwards: %d.", s.AppUnitsRunning)
	}
	if o := r.Restart; o != nil && o.Err == "" {
		x := o.V
		p("")
		p("### 5. keter restart")
		p("")
		p("`%s`; after a third of it: `systemctl kill --signal=KILL --kill-whom=main UNIT`.", x.Load.Command)
		p("")
		p("- Failed requests: %d of %d (p99 %s, max %s).", x.Load.Failed(), x.Load.Requests, ms(x.Load.P99), ms(x.Load.Max))
		p("- Kill → `keter starting` (systemd restarted it; RestartSec=100ms): %s; kill → `keter ready`: %s.", secs(x.Starting), secs(x.Ready))
		p("- keter PID %d → %d; the app's main PID unchanged: %v.", x.KeterPIDBefore, x.KeterPIDAfter, x.AppPIDSame)
	}
	if o := r.Unpack; o != nil && o.Err == "" {
		u := o.V
		p("")
		p("### 6. Unpack")
		p("")
		p("A bundle shaped like bundle/bench_test.go's (one 80 MiB binary, 3000 assets of 40 KiB): %d MB", u.Unpacked/1e6)
		p("unpacked, %d MB gzipped. keter's `bundle.Unpack` (in-process, as keter calls it) and `tar xzf` (GNU tar", u.Gzipped/1e6)
		p("with gzip as a second process) alternate into fresh folders on the same disk; deleting is not timed.")
		p("The bundle package's own `go test -run '^$' -bench BenchmarkUnpack ./bundle` measures the same thing.")
		p("")
		p("- bundle.Unpack: %s (median %.0f MB/s).", joinDur(u.Keter), u.mbps(u.Keter))
		p("- tar xzf: %s (median %.0f MB/s).", joinDur(u.Tar), u.mbps(u.Tar))
	}
	if o := r.Status; o != nil && o.Err == "" {
		o.V.details(p)
	}
	r.acmeDetails(p)
	if o := r.Recovery; o != nil && o.Err == "" {
		x := o.V
		p("")
		p("### 9. Crash recovery")
		p("")
		p("One app under keter (bench app, port map). Each round SIGKILLs the app's main process and polls")
		p("every 2 ms, with a new connection each time, until nginx answers 200 from it again: systemd")
		p("restarts a webapp after `RestartSec=100ms`. Rounds are 1.5 s apart, as separate crashes. Then,")
		p("under `%s`, keter's managed nginx's master is SIGKILLed, 1 s apart, and polled the same", x.NginxLoad.Command)
		p("way once the unit has a new main process (until systemd has killed them, the old workers may")
		p("still answer on the sockets they inherited): systemd restarts it after 100 ms")
		p("(`Restart=on-failure`), and its unit binds the port map to its new cgroup before it starts.")
		p("wrk's errors in that run are the kills' (%s).", x.NginxLoad.breakdown())
		p("")
		p("- app: %s", joinDur(x.Crash))
		p("- nginx: %s", joinDur(x.Nginx))
	}
	if o := r.ColdStart; o != nil && o.Err == "" {
		o.V.details(p)
	}
	if o := r.Gzip; o != nil && o.Err == "" && len(o.V.Keter) > 0 {
		o.V.details(p)
	}
	if o := r.Instances; o != nil && o.Err == "" {
		x := o.V
		p("")
		p("### 10. Instances")
		p("")
		p("The benchmark app with `GOMAXPROCS=1` (one thread, as a Python, Node.js or Ruby process is)")
		p("and `--cpu 2ms` (it spins about 2 ms of CPU per request, calibrated when it starts), deployed as")
		p("a webapp with `instances: 1` and `instances: 2` in turn, each round after the other version")
		p("stopped, under `%s`. wrk, nginx and the app share the 2 cores.", x.One[0].Command)
		p("")
		p("| round | instances: 1 req/s | instances: 2 req/s | 2 / 1 |")
		p("|---|---|---|---|")
		for i := range x.One {
			p("| %d | %.0f | %.0f | %.2f |", i+1, x.One[i].RPS(), x.Two[i].RPS(), x.Two[i].RPS()/x.One[i].RPS())
		}
	}
	if o := r.Thousand; o != nil && o.Err == "" {
		o.V.details(p)
	}
	if o := r.Reboot; o != nil && o.Err == "" {
		o.V.details(p)
	}
	if o := r.Behaviours; o != nil && o.Err == "" {
		x := o.V
		p("")
		p("### 11. Every kind of app across switches")
		p("")
		p("internal/behaveapp, bundled with `drain: %s`, replaced %d times under internal/loadgen: a strict", x.Drain, len(x.Switches))
		p("client (keep-alive, no retries, every answer checked to its last byte; a WebSocket closed by the")
		p("server with 1000 or 1001 counts as closed, not failed) with one worker per behaviour and method")
		p("(GET and POST; one WebSocket), each pausing %s between requests, through keter's nginx.", x.Pause)
		p("Each replacement is dropped %s after the last went live, so 3 s streams, SSE, long polls, downloads", x.Between)
		p("and the WebSocket are in flight at every switch. A switch's time is when the new version first")
		p("answered a new `GET /` (polled every 5 ms); the load ran %s and ended once every old version had", x.Load.Round(100*time.Millisecond))
		p("been stopped (%s). nginx reloaded %d times during the load.", drainedCounts(x.Drained), x.Reloads)
		if len(x.Live) == len(x.Switches) && len(x.Live) > 0 {
			var gaps []time.Duration
			for i := range x.Live {
				gaps = append(gaps, x.Switches[i].Sub(x.Live[i]))
			}
			p("keter's `version live` line → the first fresh answer from the new version: median %s, max %s", signedMs(median(gaps)), signedMs(slices.Max(gaps)))
			p("(that request, too, may go out on a connection nginx kept to the old version; so a behaviour's")
			p("*new* below can be negative: the load met the new version before the fresh `GET /` did).")
		}
		p("")
		p("Switch time per behaviour, over the switches whose versions the behaviour met: *new* is how long")
		p("after the switch the behaviour's first answer from the new version began (its head; for the")
		p("WebSocket its first echo: a WebSocket stays with its version until that version's drain time")
		p("ends, then reconnects to whichever is live); *old* is how long after the switch its last answer")
		p("from the version the switch replaced ended (negative: before the switch). A long poll's head")
		p("comes with its answer, 3 s after its request, so its *new* is at least that. A behaviour whose")
		p("answers last 3 s can skip a version that was live for less than that.")
		p("")
		p("| behaviour | sent | failed | answers per version | new: median | new: max | old ended: median | old ended: max |")
		p("|---|---|---|---|---|---|---|---|")
		for _, b := range x.behaviours() {
			c := x.Counts[b]
			firstNew, lastOld := x.switchTimes(b)
			failedBy := ""
			if c.Failed > 0 {
				failedBy = fmt.Sprintf(" (%v)", c.FailedBy)
			}
			p("| %s | %d | %d%s | %s | %s | %s | %s | %s |", b, c.Sent, c.Failed, failedBy, versionCounts(c.Versions),
				medianOf(firstNew, len(x.Switches)), maxOf(firstNew), medianOf(lastOld, len(x.Switches)), maxOf(lastOld))
		}
		var failures []string
		for _, b := range x.behaviours() {
			failures = append(failures, x.Counts[b].Failures...)
		}
		if len(failures) > 0 {
			p("")
			p("Failures (the first of each behaviour, as loadgen saw them):")
			p("")
			for _, f := range failures {
				p("- `%s`", f)
			}
		}
	}
	r.hostsDetails(p)
	r.accessDetails(p)
	if errs := r.errs(); len(errs) > 0 {
		p("")
		p("### Benchmarks that did not finish")
		p("")
		for _, e := range errs {
			p("- %s", e)
		}
	}
}

func joinF(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(parts, ", ")
}

func joinDur(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.3f", d.Seconds())
	}
	return strings.Join(parts, ", ") + " s"
}

// errs lists the benchmarks that did not finish, with why.
func (r *results) errs() []string {
	var out []string
	add := func(name, err string) {
		if err != "" {
			out = append(out, name+": "+err)
		}
	}
	if r.Deploy != nil {
		add("deploy", r.Deploy.Err)
	}
	if r.Replace != nil {
		add("replace", r.Replace.Err)
	}
	if r.Throughput != nil {
		add("throughput", r.Throughput.Err)
	}
	if r.Scale != nil {
		add("scale", r.Scale.Err)
	}
	if r.Restart != nil {
		add("restart", r.Restart.Err)
	}
	if r.Unpack != nil {
		add("unpack", r.Unpack.Err)
	}
	if r.Status != nil {
		add("status", r.Status.Err)
	}
	if r.ACME != nil {
		add("acme", r.ACME.Err)
	}
	if r.Instances != nil {
		add("instances", r.Instances.Err)
	}
	if r.Recovery != nil {
		add("recovery", r.Recovery.Err)
	}
	if r.Behaviours != nil {
		add("behaviours", r.Behaviours.Err)
	}
	if r.Gzip != nil {
		add("gzip", r.Gzip.Err)
	}
	if r.Hosts != nil {
		add("hosts", r.Hosts.Err)
	}
	if r.ColdStart != nil {
		add("coldstart", r.ColdStart.Err)
	}
	if r.Access != nil {
		add("access", r.Access.Err)
	}
	if r.Canary != nil {
		add("canary", r.Canary.Err)
	}
	if r.Thousand != nil {
		add("thousand", r.Thousand.Err)
	}
	if r.Reboot != nil {
		add("reboot", r.Reboot.Err)
	}
	return out
}

// later lists the RSS samples after the first, e.g. ", 20.1 MB after 10s".
func (s scaleResult) later() string {
	var b strings.Builder
	for _, x := range s.RSSLater {
		fmt.Fprintf(&b, ", %s after %s", mb(x.RSSKB), x.After)
	}
	return b.String()
}

// rssVerdict judges the goal at 2 s after all served and at each later
// sample, and says which.
func (s scaleResult) rssVerdict() string {
	if s.RSSKB < goalRSSKB {
		return "met"
	}
	for _, x := range s.RSSLater {
		if x.RSSKB < goalRSSKB {
			return fmt.Sprintf("MISSED at 2 s; met after %s", x.After)
		}
	}
	return "MISSED"
}
