package main

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/keter-systemd/keter/bundle"
)

// accessResult: the access rules' cost at keter's front door. A rate
// limit that is never hit, keter's nginx vs a plain keep-alive nginx with
// the same limit_req, alternating rounds; and basic auth per hash scheme,
// against the same front door without auth.
type accessResult struct {
	Limited, PlainLimited []wrkResult
	Unlimited             []wrkResult // keter's nginx, the same app without the limit
	LimitCounted          wrkResult   // a counting run: refused requests show as non-2xx
	Open                  wrkResult
	Schemes               []schemeRun
}

// schemeRun is basic auth with one hash scheme: throughput under -c32
// and the latency of two clients (wrk's least with its two threads), which
// the hash check dominates.
type schemeRun struct {
	Scheme, Hash string
	Load, One    wrkResult
}

func (r accessResult) VsPlain() float64 { return medianF(ratios(r.Limited, r.PlainLimited)) }

const (
	accessUser     = "bench"
	accessPassword = "correct horse battery staple"
	// Never hit on loopback: 1,000,000 a second, as much burst.
	benchLimit = "rate-limiter: {throttles: [{name: ip, limit: 1000000, period: 1, algorithm: TokenBucket, identifier_by: ip}]}"
)

// accessHashes makes accessPassword's hash in each scheme: bcrypt at
// keter's cost and at the usual 10, SHA-512 crypt and Apache MD5 (with
// openssl passwd), salted SHA-1.
func accessHashes(ctx context.Context) ([][2]string, error) {
	var out [][2]string
	for _, cost := range []int{bundle.BcryptCost, 10} {
		h, err := bcrypt.GenerateFromPassword([]byte(accessPassword), cost)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{fmt.Sprintf("bcrypt cost %d", cost), string(h)})
	}
	for _, s := range []struct{ name, flag string }{{"SHA-512 crypt ($6$, 5000 rounds)", "-6"}, {"Apache MD5 ($apr1$)", "-apr1"}} {
		h, err := exec.CommandContext(ctx, "openssl", "passwd", s.flag, accessPassword).Output()
		if err != nil {
			return nil, fmt.Errorf("openssl passwd %s: %w", s.flag, err)
		}
		out = append(out, [2]string{s.name, strings.TrimSpace(string(h))})
	}
	salt := make([]byte, 8)
	rand.Read(salt)
	sum := sha1.Sum(append([]byte(accessPassword), salt...))
	out = append(out, [2]string{"salted SHA-1 ({SSHA})", "{SSHA}" + base64.StdEncoding.EncodeToString(append(sum[:], salt...))})
	for _, h := range out {
		if err := bundle.ValidHash(h[1]); err != nil {
			return nil, fmt.Errorf("%s: %w", h[0], err)
		}
	}
	return out, nil
}

func benchAccess(ctx context.Context, e env) (res accessResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "access")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	hashes, err := accessHashes(ctx)
	if err != nil {
		return res, err
	}
	stanza := func(host, extra string) string {
		return fmt.Sprintf("  - type: webapp\n    exec: ../bin/app\n    args: [--message, hello]\n    host: %s\n%s", host, extra)
	}
	y := "stanzas:\n" + stanza("open.bench.test", "") + stanza("limit.bench.test", "    middleware:\n      - "+benchLimit+"\n")
	for i, h := range hashes {
		y += stanza(fmt.Sprintf("auth%d.bench.test", i), fmt.Sprintf("    middleware:\n      - basic-auth: {hashed-creds: {%s: %q}}\n", accessUser, h[1]))
	}
	b, err := makeBundleYAML(e.app, y)
	if err != nil {
		return res, err
	}
	if err := stage(k.incoming(), "access", b); err != nil {
		return res, err
	}
	if _, err := publish(k.incoming(), "access"); err != nil {
		return res, err
	}
	for _, h := range []string{"open.bench.test", "limit.bench.test"} {
		if _, err := waitBody(ctx, k.port, h, "hello", 5*time.Millisecond, 60*time.Second); err != nil {
			return res, err
		}
	}
	authz := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(accessUser+":"+accessPassword))
	for i := range hashes {
		if err := checkAuth(ctx, k.port, fmt.Sprintf("auth%d.bench.test", i)); err != nil {
			return res, fmt.Errorf("%s: %w", hashes[i][0], err)
		}
	}
	entries, err := k.waitLog(ctx, "version live", 1, 30*time.Second)
	if err != nil {
		return res, err
	}
	appPort, err := strconv.Atoi(portsRE.FindString(filter(entries, "version live")[0].fields["ports"]))
	if err != nil {
		return res, errors.New("keter's log names no port for the app")
	}
	zone := "limit_req_zone $binary_remote_addr zone=bench:10m rate=1000000r/s;"
	loc := "        limit_req zone=bench burst=999999 nodelay;\n        limit_req_status 429;\n"
	plainDir := filepath.Join(e.base, "plain-nginx-limit")
	plainPort, stop, err := startPlainNginxWith(ctx, plainDir, appPort, "", zone, loc)
	if err != nil {
		return res, err
	}
	defer stop()
	if _, err := waitBody(ctx, plainPort, "limit.bench.test", "hello", 5*time.Millisecond, 10*time.Second); err != nil {
		return res, fmt.Errorf("plain nginx: %w", err)
	}
	url := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/", port) }
	half := e.wrkDur / 2
	if err := scheduleAllAlike(ctx, e, plainUnit(plainDir)); err != nil {
		return res, err
	}
	app, err := appUnit(ctx)
	if err != nil {
		return res, err
	}
	units := func(nginx string) map[string]string { return map[string]string{"nginx": nginx, "app": app} }
	err = alternate(ctx, e, []contender{
		{"limit.bench.test", k.port, &res.Limited, units(nginxUnit)},
		{"limit.bench.test", plainPort, &res.PlainLimited, units(plainUnit(plainDir))},
		{"open.bench.test", k.port, &res.Unlimited, units(nginxUnit)},
	}, func(i int) {
		e.logf("  round %d: keter with a rate limit %.0f, plain nginx with the same limit %.0f, keter without %.0f req/s: %.3f of plain, %.3f of none",
			i+1, res.Limited[i].RPS(), res.PlainLimited[i].RPS(), res.Unlimited[i].RPS(),
			res.Limited[i].RPS()/res.PlainLimited[i].RPS(), res.Limited[i].RPS()/res.Unlimited[i].RPS())
	})
	if err != nil {
		return res, err
	}
	e.logf("  keter/plain %s", spread(res.Limited, res.PlainLimited))
	e.logf("  CPU: keter %s; plain %s; keter without %s", cpuPerRequest(res.Limited), cpuPerRequest(res.PlainLimited), cpuPerRequest(res.Unlimited))
	if res.LimitCounted, err = runWrk(ctx, 32, 2*time.Second, "limit.bench.test", url(k.port), true); err != nil {
		return res, err
	}
	if res.Open, err = runWrk(ctx, 32, half, "open.bench.test", url(k.port), false); err != nil {
		return res, err
	}
	e.logf("  no rules: %.0f req/s; the limit, counted: %d of %d refused", res.Open.RPS(), res.LimitCounted.Failed(), res.LimitCounted.Requests)
	for i, h := range hashes {
		s := schemeRun{Scheme: h[0], Hash: h[1][:min(len(h[1]), 7)]}
		host := fmt.Sprintf("auth%d.bench.test", i)
		for _, x := range []struct {
			conns int
			into  *wrkResult
		}{{32, &s.Load}, {2, &s.One}} {
			w, err := startWrk(ctx, x.conns, half, host, url(k.port), true, authz)
			if err != nil {
				return res, err
			}
			if *x.into, err = w.wait(); err != nil {
				return res, err
			}
		}
		e.logf("  basic auth, %s: %.0f req/s with 32 clients (failed: %s); two clients: p50 %s", h[0], s.Load.RPS(), s.Load.breakdown(), ms(s.One.P50))
		res.Schemes = append(res.Schemes, s)
	}
	return res, nil
}

// checkAuth: host refuses no credentials and accepts the bench user's.
func checkAuth(ctx context.Context, port int, host string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var codes []int
		for _, user := range []string{"", accessUser} {
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
			req.Host = host
			if user != "" {
				req.SetBasicAuth(user, accessPassword)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes = append(codes, 0)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
		}
		if codes[0] == 401 && codes[1] == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s answered %v without and with credentials, want 401 then 200", host, codes)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func (r *results) accessRows() []row {
	o := r.Access
	if o == nil {
		return nil
	}
	if o.Err != "" {
		return []row{{"15. access rules", "did not finish: " + o.Err, "", "FAILED"}}
	}
	a := o.V
	rows := []row{{fmt.Sprintf("15. a rate limit that is not hit: keter's nginx / a plain keep-alive nginx with the same limit_req, median of %d alternating rounds", len(a.Limited)),
		fmt.Sprintf("%s; with / without the limit on keter: %s; %d of %d requests refused in a counted run%s",
			spread(a.Limited, a.PlainLimited), spread(a.Limited, a.Unlimited), a.LimitCounted.Failed(), a.LimitCounted.Requests, workRatio(a.Limited, a.PlainLimited)),
		"≥ 0.95", verdict(len(a.Limited) >= 3 && a.VsPlain() >= 0.95)}}
	var per []string
	for _, s := range a.Schemes {
		f := ""
		if n := s.Load.Failed() + s.One.Failed(); n > 0 {
			f = fmt.Sprintf(", %d failed", n)
		}
		per = append(per, fmt.Sprintf("%s %.0f req/s (two clients: %s a request%s)", s.Scheme, s.Load.RPS(), ms(s.One.P50), f))
	}
	rows = append(rows, row{"15. basic auth per hash scheme, through keter's nginx, 32 clients",
		fmt.Sprintf("no auth %.0f req/s; %s", a.Open.RPS(), strings.Join(per, "; ")), "(reported)", "—"})
	return rows
}

func (r *results) accessDetails(p func(string, ...any)) {
	o := r.Access
	if o == nil || o.Err != "" {
		return
	}
	a := o.V
	p("")
	p("### 15. Access rules")
	p("")
	p("One bundle of bench/app stanzas: one open, one with Keter's `%s`", benchLimit)
	p("(never hit on loopback), and one per hash scheme with `basic-auth: {hashed-creds: {%s: HASH}}`.", accessUser)
	p("The plain nginx is the throughput benchmark's keep-alive config plus `limit_req_zone $binary_remote_addr")
	p("zone=bench:10m rate=1000000r/s` and `limit_req zone=bench burst=999999 nodelay`, in front of one of")
	p("the same app's processes. Each run: `%s`.", a.Limited[0].Command)
	p("")
	p("| round | keter, limited req/s | plain nginx, limited req/s | keter / plain | keter, no limit req/s | limited / no limit |")
	p("|---|---|---|---|---|---|")
	for i := range a.Limited {
		p("| %d | %.0f | %.0f | %.3f | %.0f | %.3f |", i+1, a.Limited[i].RPS(), a.PlainLimited[i].RPS(), a.Limited[i].RPS()/a.PlainLimited[i].RPS(),
			a.Unlimited[i].RPS(), a.Limited[i].RPS()/a.Unlimited[i].RPS())
	}
	p("")
	p("nginx checks the password of every request (it caches nothing), in the worker, which serves")
	p("nothing else meanwhile: the hash's cost is paid per request. Two clients (one per nginx worker) show it:")
	p("")
	p("| scheme | hash | req/s, 32 clients | two clients: p50 | p99 | failed |")
	p("|---|---|---|---|---|---|")
	p("| no auth | — | %.0f | | | |", a.Open.RPS())
	for _, s := range a.Schemes {
		p("| %s | `%s…` | %.0f | %s | %s | %s; %s |", s.Scheme, s.Hash, s.Load.RPS(), ms(s.One.P50), ms(s.One.P99), s.Load.breakdown(), s.One.breakdown())
	}
}
