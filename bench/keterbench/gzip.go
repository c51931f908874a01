package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/nginx"
)

// gzipResult: wrk with Accept-Encoding: gzip through keter's front door
// (gzip on by default) and through a plain keep-alive nginx with the same
// gzip settings, alternating rounds, for a text page worth compressing.
type gzipResult struct {
	Keter, Plain     []wrkResult
	Body, KeterBytes int // the page, and what each front door sent for it
	PlainBytes       int
	Directives       string
	KeterCE, PlainCE string // Content-Encoding each answered with
}

const goalGzip = 0.95 // of a plain keep-alive nginx gzipping alike

// VsPlain is the median of keter / plain over the rounds.
func (r gzipResult) VsPlain() float64 { return medianF(ratios(r.Keter, r.Plain)) }

// gzipPage is a 16 KiB HTML-like page: as compressible as real markup.
func gzipPage() string {
	var b strings.Builder
	for i := 0; b.Len() < 16<<10; i++ {
		fmt.Fprintf(&b, "<li class=\"item item-%d\"><a href=\"/items/%d\">Item %d</a> <span>%d in stock</span></li>\n", i, i*7919%10007, i, i*31%97)
	}
	return b.String()
}

// gzipDirectives is nginx.GzipDirectives as lines for a plain config.
func gzipDirectives() string {
	var b strings.Builder
	nginx.GzipDirectives(func(parts ...string) { b.WriteString("        " + strings.Join(parts, " ") + ";\n") })
	return b.String()
}

// fetchGzip gets url once with Accept-Encoding: gzip and returns the size
// on the wire and the Content-Encoding.
func fetchGzip(ctx context.Context, url, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, resp.Body); err != nil {
		return 0, "", err
	}
	if resp.StatusCode != 200 {
		return 0, "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return buf.Len(), resp.Header.Get("Content-Encoding"), nil
}

func benchGzip(ctx context.Context, e env) (res gzipResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "gzip")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "gzip.bench.test"
	page := gzipPage()
	res.Body = len(page)
	b, err := makeBundle(e.app, host, page)
	if err != nil {
		return res, err
	}
	if err := stage(k.incoming(), "gzip", b); err != nil {
		return res, err
	}
	if _, err := publish(k.incoming(), "gzip"); err != nil {
		return res, err
	}
	entries, err := k.waitLog(ctx, "version live", 1, 60*time.Second)
	if err != nil {
		return res, err
	}
	appPort, err := strconv.Atoi(portsRE.FindString(filter(entries, "version live")[0].fields["ports"]))
	if err != nil {
		return res, errors.New("keter's log names no port for the app")
	}
	res.Directives = strings.TrimSpace(strings.ReplaceAll(gzipDirectives(), "        ", ""))
	plainDir := filepath.Join(e.base, "plain-nginx-gzip")
	port, stop, err := startPlainNginxWith(ctx, plainDir, appPort, "", "", gzipDirectives())
	if err != nil {
		return res, err
	}
	defer stop()
	url := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/", port) }
	if err := sleepUntil(ctx, 10*time.Second, func() error {
		var err error
		if res.KeterBytes, res.KeterCE, err = fetchGzip(ctx, url(k.port), host); err != nil {
			return err
		}
		if res.PlainBytes, res.PlainCE, err = fetchGzip(ctx, url(port), host); err != nil {
			return err
		}
		if res.KeterCE != "gzip" || res.PlainCE != "gzip" {
			return fmt.Errorf("Content-Encoding: keter %q (%d bytes), plain nginx %q (%d bytes): both must gzip the %d-byte page",
				res.KeterCE, res.KeterBytes, res.PlainCE, res.PlainBytes, res.Body)
		}
		return nil
	}); err != nil {
		return res, err
	}
	if err := scheduleAllAlike(ctx, e, plainUnit(plainDir)); err != nil {
		return res, err
	}
	app, err := appUnit(ctx)
	if err != nil {
		return res, err
	}
	err = alternate(ctx, e, []contender{
		{host, k.port, &res.Keter, map[string]string{"nginx": nginxUnit, "app": app}},
		{host, port, &res.Plain, map[string]string{"nginx": plainUnit(plainDir), "app": app}},
	}, func(i int) {
		e.logf("  round %d: keter %.0f, plain nginx %.0f req/s (both gzipping %d → %d bytes): keter/plain %.3f",
			i+1, res.Keter[i].RPS(), res.Plain[i].RPS(), res.Body, res.KeterBytes, res.Keter[i].RPS()/res.Plain[i].RPS())
	}, "Accept-Encoding: gzip")
	if err != nil {
		return res, err
	}
	e.logf("  keter/plain %s", spread(res.Keter, res.Plain))
	e.logf("  CPU: keter %s; plain %s", cpuPerRequest(res.Keter), cpuPerRequest(res.Plain))
	return res, nil
}

// sleepUntil retries f until it succeeds or within has passed.
func sleepUntil(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (x gzipResult) row() row {
	return row{fmt.Sprintf("12. gzip: req/s through keter's nginx / a plain keep-alive nginx gzipping alike, a %d-byte text page sent as %d, median of %d alternating rounds of %s", x.Body, x.KeterBytes, len(x.Keter), x.Keter[0].Duration.Round(time.Second)),
		fmt.Sprintf("%s; %.0f vs %.0f req/s%s", spread(x.Keter, x.Plain), sumRPS(x.Keter)/float64(len(x.Keter)), sumRPS(x.Plain)/float64(len(x.Plain)), workRatio(x.Keter, x.Plain)),
		fmt.Sprintf("≥ %.2f", goalGzip), verdict(len(x.Keter) >= 3 && x.VsPlain() >= goalGzip)}
}

func (x gzipResult) details(p func(string, ...any)) {
	p("")
	p("### 12. Compression")
	p("")
	p("The benchmark app answering a %d-byte HTML-like text page, through keter's front door (gzip on by", x.Body)
	p("default) and through a plain keep-alive nginx with the same settings in its server block:")
	p("")
	p("```")
	p("%s", x.Directives)
	p("```")
	p("")
	p("Both sent it as %d bytes (keter) and %d bytes (plain). Each round runs `%s` against one, then the other,", x.KeterBytes, x.PlainBytes, x.Keter[0].Command)
	p("the order swapping every round; the plain nginx runs as a transient unit, as keter's does.")
	p("")
	p("| round | keter req/s | plain nginx req/s | keter / plain |")
	p("|---|---|---|---|")
	for i := range min(len(x.Keter), len(x.Plain)) {
		p("| %d | %.0f | %.0f | %.3f |", i+1, x.Keter[i].RPS(), x.Plain[i].RPS(), x.Keter[i].RPS()/x.Plain[i].RPS())
	}
}
