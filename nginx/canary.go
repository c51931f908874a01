package nginx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// Canary releases without a reload. Behind a port map every webapp stanza
// is rendered ahead with a second upstream, its canary group: the app's
// canary fronts, with the live fronts as backups. A cookie split puts each
// client in one of CanaryBuckets buckets of 1 %; the stanza's location
// sends a request to the canary group when the flag file of its bucket
// exists (Paths.CanaryDir/UPSTREAM/BUCKET), else to the live group. So:
//
//   - a canary starts by the map sending the canary fronts to its
//     instances, then the flag files of buckets 0..N-1 appearing;
//   - a share change creates or removes flag files (buckets below the
//     share are the canary's: a share that grows keeps its clients);
//   - promote points the live fronts at the canary's instances, abort
//     the canary fronts at the live ones, and the flags go;
//   - a canary whose instances are not serving has its fronts sent to the
//     live instances by keter, and nginx meanwhile falls back to the
//     backups when a canary front refuses.
//
// The flags are stat'ed through nginx's open file cache (valid 1 s), so
// a request costs no stat call and a step takes effect within 1 s. A
// client keeps its bucket through its cookie, set when a canary runs and
// the request had none.

// CanaryBuckets is how many buckets the split has: one per percent.
const CanaryBuckets = 100

// CanaryCookie is the cookie that keeps a client in its bucket.
const CanaryCookie = "keter_canary"

// canaryCookieAge is how long a browser keeps its bucket.
const canaryCookieAge = "604800" // 7 days

// Canary is an app's canary version as the front door needs it.
type Canary struct {
	// Ports are each webapp stanza's canary instances' own ports.
	Ports map[int][]int
	// Down are canary instance ports that serve nothing now.
	Down map[int]bool
	// Percent of new clients go to the canary (0..100).
	Percent int
	// Ready is false while a canary instance is not running: its fronts
	// go to the live instances, whatever the buckets say.
	Ready bool
}

// canaryUpstream is the name of site s's canary group.
func canaryUpstream(s *site) string { return upstreamName(s) + "_canary" }

// canaryMaps renders the split, once, when any site has a canary group.
func (r *renderer) canaryMaps(w *writer) {
	some := false
	for _, s := range r.sites {
		some = some || len(s.canary) > 0
	}
	if !some {
		return
	}
	c := "$cookie_" + CanaryCookie
	w.open("map", c, "$keter_canary_key")
	w.line(`""`, "$request_id")
	w.line("default", c)
	w.close()
	w.open("map", c, "$keter_canary_new")
	w.line(`""`, q(CanaryCookie+"=$request_id; Path=/; Max-Age="+canaryCookieAge+"; HttpOnly; SameSite=Lax"))
	w.line("default", `""`)
	w.close()
	w.open("split_clients", q("$keter_canary_key"), "$keter_canary_bucket")
	for b := range CanaryBuckets - 1 {
		w.line("1%", strconv.Itoa(b))
	}
	w.line("*", strconv.Itoa(CanaryBuckets-1))
	w.close()
	if r.canaryLog() != "" {
		w.line("log_format", "keter_canary", q("$upstream_addr"))
	}
}

// canaryGroup renders site s's canary upstream: its canary fronts first,
// the live fronts as backups (a canary front that refuses sends the
// request to the live version).
func (r *renderer) canaryGroup(w *writer, s *site) {
	if len(s.canary) == 0 {
		return
	}
	w.open("upstream", canaryUpstream(s))
	w.line("least_conn")
	for _, port := range s.canary {
		w.line("server", hostPort("127.0.0.1", port), "max_fails=1", "fail_timeout=1s")
	}
	for _, port := range s.ports {
		w.line("server", hostPort("127.0.0.1", port), "backup", "max_fails=0")
	}
	w.line("keepalive", "64")
	w.line("keepalive_time", strconv.FormatInt(UpstreamKeepaliveTime.Milliseconds(), 10)+"ms")
	w.line("keepalive_timeout", strconv.FormatInt(UpstreamKeepaliveTimeout.Milliseconds(), 10)+"ms")
	w.close()
}

// canaryPass renders a webapp location's proxy_pass: the live group, or
// the canary group when the request's bucket is flagged; and the cookie
// for a new client while a canary runs. With no canary running a request
// costs two lookups in the open file cache and constant sets: the bucket
// (a random id and a hash for a client without a cookie) is computed only
// when "on" exists, and proxy_pass names its group, not a variable (which
// nginx resolves per request by a search through every upstream). Each
// if's block inherits the location's directives; a request takes the
// config of the last if that matched, so the bucket's comes last.
func (r *renderer) canaryPass(w *writer, s *site) {
	if len(s.canary) == 0 {
		w.line("proxy_pass", "http://"+upstreamName(s))
		return
	}
	dir := filepath.Join(r.p.CanaryDir, upstreamName(s))
	none := q(filepath.Join(dir, canaryNone))
	l := r.canaryLog()
	w.line("set", "$keter_canary_cookie", `""`)
	w.line("set", "$keter_canary_flag", none)
	if l != "" {
		w.line("set", "$keter_canary_log", `""`)
		w.line("set", "$keter_canary_sock", none)
	}
	w.open("if", "(-f", q(filepath.Join(dir, canaryOn)), ")")
	w.line("set", "$keter_canary_cookie", "$keter_canary_new")
	w.line("set", "$keter_canary_flag", q(dir+"/$keter_canary_bucket"))
	if l != "" {
		w.line("set", "$keter_canary_sock", q(l+canaryLogOn))
	}
	w.close()
	if l != "" {
		w.open("if", "(-f", "$keter_canary_sock", ")")
		w.line("set", "$keter_canary_log", "1")
		w.close()
	}
	w.open("if", "(-f", "$keter_canary_flag", ")")
	w.line("proxy_pass", "http://"+canaryUpstream(s))
	w.close()
	w.line("proxy_pass", "http://"+upstreamName(s))
	w.line("add_header", "Set-Cookie", "$keter_canary_cookie", "always")
	// The flags' stat results are kept for up to 1 s per worker (a
	// missing file too): a step takes effect within 1 s, in the order
	// keter made it, and requests cost no stat call.
	w.line("open_file_cache", "max=256", "inactive=60s")
	w.line("open_file_cache_valid", "1s")
	w.line("open_file_cache_errors", "on")
	if l != "" {
		// Logged while a canary runs and keter's socket is there: nginx
		// logs an alert for each line it cannot send.
		w.line("access_log", q("syslog:server=unix:"+l+",nohostname,tag=keter"), "keter_canary", "if=$keter_canary_log")
	}
}

// canaryNone is a flag file name keter never writes: the path tested
// while no canary runs.
const canaryNone = "none"

// canaryOn is the flag file that says a canary runs for a stanza.
const canaryOn = "on"

// canaryFronts are stanza i's canary fronts when the site gets a canary
// group: behind a port map, with a folder for the flags.
func (r *model) canaryFronts(a App, i int) []int {
	if !r.p.Mapped || r.p.CanaryDir == "" || checkPath("canary flag folder", r.p.CanaryDir) != nil {
		return nil
	}
	fs := a.CanaryFronts[i]
	for _, f := range fs {
		if f < 1 || f > 65535 {
			return nil
		}
	}
	return fs
}

// mapCanary points each stanza's canary fronts at the canary's instances
// while it is ready, else at the live ones (a.Ports), or at the
// maintenance responder while the app is in maintenance.
func (m *Manager) mapCanary(want map[int]int, a App) {
	for idx, fronts := range a.CanaryFronts {
		switch {
		case a.Maintenance != nil && m.paths.Maintenance != 0:
			for _, f := range fronts {
				want[f] = m.paths.Maintenance
			}
		case a.Canary != nil && a.Canary.Ready && len(a.Canary.Ports[idx]) > 0:
			mapFronts(want, fronts, a.Canary.Ports[idx], a.Canary.Down, nil)
		default:
			mapFronts(want, fronts, a.Ports[idx], a.Down, a.Resting)
		}
	}
}

// writeCanaryFlags makes each stanza's flag folder say what apps say:
// "on" and buckets 0..Percent-1 for an app with a canary, nothing else.
// Called after the map sends the canary fronts where they belong, so a
// flagged bucket never reaches a front that is not ready.
func (m *Manager) writeCanaryFlags(apps []App) error {
	dir := m.paths.CanaryDir
	if dir == "" || m.pm == nil {
		return nil
	}
	want := map[string]int{} // stanza folder → share; absent: no canary
	for _, a := range apps {
		if a.Canary == nil || a.Config == nil {
			continue
		}
		for i, st := range a.Config.Stanzas {
			if st.WebApp != nil && len(a.CanaryFronts[i]) > 0 {
				want[upstreamName(&site{app: a.Name, index: i})] = a.Canary.Percent
			}
		}
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("creating the canary flag folder: %w", err)
	}
	var errs []error
	for name, pct := range want {
		if err := setFlags(filepath.Join(dir, name), pct); err != nil {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("reading the canary flag folder: %w", err))...)
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; ok || !strings.HasPrefix(e.Name(), "keter_") {
			continue
		}
		if err := clearFlags(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// setFlags makes folder dir hold "on" and the files of buckets
// 0..pct-1. Buckets are added from the lowest and removed from the
// highest, so a share moves one bucket at a time.
func setFlags(dir string, pct int) error {
	pct = max(0, min(pct, CanaryBuckets))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating canary flags: %w", err)
	}
	if err := touch(filepath.Join(dir, canaryOn)); err != nil {
		return err
	}
	for b := range CanaryBuckets {
		if b < pct {
			if err := touch(filepath.Join(dir, strconv.Itoa(b))); err != nil {
				return err
			}
		}
	}
	for b := CanaryBuckets - 1; b >= pct; b-- {
		if err := os.Remove(filepath.Join(dir, strconv.Itoa(b))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing canary flag: %w", err)
		}
	}
	return nil
}

// clearFlags removes a stanza's flags: the buckets first (from the
// highest), "on" last.
func clearFlags(dir string) error {
	for b := CanaryBuckets - 1; b >= 0; b-- {
		if err := os.Remove(filepath.Join(dir, strconv.Itoa(b))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing canary flag: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing canary flags: %w", err)
	}
	return nil
}

func touch(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := atomicfile.Write(path, nil, 0o644); err != nil {
		return fmt.Errorf("writing canary flag: %w", err)
	}
	return nil
}
