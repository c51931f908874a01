package main

import "fmt"

func (r *results) acmeRows() []row {
	o := r.ACME
	if o == nil {
		return nil
	}
	if o.Err != "" {
		return []row{{"8. automatic HTTPS", "did not finish: " + o.Err, "", "FAILED"}}
	}
	a := o.V
	dyn, st := cpuPer(a.Dynamic), cpuPer(a.Static)
	return []row{
		{"8. ACME: new host → first HTTPS 200 with a verifying chain (Pebble, validation sleep off)",
			fmt.Sprintf("median %s, p90 %s over %d new hosts (their first plain HTTP 200: median %s)",
				secs(median(a.HTTPS)), secs(percentile(a.HTTPS, 90)), len(a.HTTPS), secs(median(a.HTTP))),
			"(none stated)", "—"},
		{"8. ACME: nginx reloads while the certificates arrived",
			fmt.Sprintf("%d reloads for %d new hosts: their deploys' own; a certificate in place needs none", a.Reloads, a.Hosts),
			"no reload per certificate", verdict(a.Reloads <= a.Hosts)},
		{"8. ACME: cost of reading the certificate at each handshake",
			fmt.Sprintf("nginx CPU per full TLS handshake %.0f µs vs %.0f µs with a static ssl_certificate (%+.0f%%); %.0f vs %.0f handshakes/s seen by the client; resumed from a session ticket (listener session: true): %.0f µs vs %.0f µs",
				dyn, st, 100*(dyn/st-1), sumRate(a.Dynamic), sumRate(a.Static), cpuPer(a.DynamicResumed), cpuPer(a.StaticResumed)),
			"(none stated)", "—"},
	}
}

func sumRate(runs []handshakeRun) float64 {
	var n int
	var secs float64
	for _, r := range runs {
		n += r.Handshakes
		secs += r.Dur.Seconds()
	}
	return float64(n) / secs
}

func (r *results) acmeDetails(p func(string, ...any)) {
	o := r.ACME
	if o == nil || o.Err != "" {
		return
	}
	a := o.V
	p("")
	p("### 8. Automatic HTTPS (ACME)")
	p("")
	p("keter with a plain listener and an `acme: true` TLS listener on loopback; Pebble %s (built with", "v2.10.3")
	p("`go install`) as the CA with `PEBBLE_VA_NOSLEEP=1` (its random 0-15 s validation delay off; validation")
	p("itself is real: Pebble fetches the HTTP-01 answer through keter's nginx, every name resolving to")
	p("127.0.0.1 through pebble-challtestsrv). %d new apps, each with a new host, dropped one after", a.Hosts)
	p("another; a client polls every 10 ms over plain HTTP and over HTTPS (a new handshake each time,")
	p("verifying the chain against Pebble's root) until each answers 200.")
	p("")
	p("- rename → first plain 200 (the deploy): %s.", joinDur(a.HTTP))
	p("- rename → first verified HTTPS 200 (deploy, then account (first host only), order, HTTP-01 through nginx, finalize, file in place): %s.", joinDur(a.HTTPS))
	p("- nginx reloads meanwhile: %d (a new host is a new server block: one reload by its deploy; the certificate replaces a file nginx reads at each handshake).", a.Reloads)
	p("")
	p("The cost of that file read: nginx reads `ssl_certificate` at each handshake when its name holds a")
	p("variable (nginx 1.15.9+; 1.27.4 added a cache, Debian 12 has 1.22). The first host's certificate was")
	p("copied to a file and served to a second host by a static `ssl_certificate` (a stanza's `ssl:")
	p("{certificate, key}`); 4 clients then made new TLS connections with one request each for 3 s against")
	p("each, alternating, 3 rounds: full handshakes (no session resumption, ECDSA P-256), then handshakes")
	p("resumed from a session ticket (the listener has `session: true`). nginx's CPU is its workers'")
	p("utime+stime from /proc.")
	p("")
	p("| round | ACME map: full/s | µs each | static: full/s | µs each | ACME map: resumed/s | µs each | static: resumed/s | µs each |")
	p("|---|---|---|---|---|---|---|---|---|")
	for i := range a.Dynamic {
		d, s := a.Dynamic[i], a.Static[i]
		dr, sr := a.DynamicResumed[i], a.StaticResumed[i]
		p("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |", i+1, d.rate(), cpuPer([]handshakeRun{d}), s.rate(), cpuPer([]handshakeRun{s}),
			dr.rate(), cpuPer([]handshakeRun{dr}), sr.rate(), cpuPer([]handshakeRun{sr}))
	}
	p("")
	p("The difference is OpenSSL 3.0 (Debian 12) decoding the PEM key at each full handshake; a resumed")
	p("handshake does not load the certificate. keter chose the per-handshake read anyway: a first")
	p("certificate and every renewal then take effect without an nginx reload, which would close idle")
	p("keep-alive client connections (section 2's control).")
}
