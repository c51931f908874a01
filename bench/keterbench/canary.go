package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// canaryResult: the canary's split accuracy. For each share, fresh
// clients (no cookie) are counted by the version that answered; a client
// with its cookie asks again and must get its version every time.
type canaryResult struct {
	Clients int
	Shares  []canaryShare
}

type canaryShare struct {
	Percent  int
	Canary   int     // fresh clients the canary answered
	Measured float64 // percent
	Sticky   int     // of StickyOf requests with a cookie, same version
	StickyOf int
}

// MaxError is the largest |measured - share|, in points.
func (r canaryResult) MaxError() float64 {
	worst := 0.0
	for _, s := range r.Shares {
		worst = max(worst, math.Abs(s.Measured-float64(s.Percent)))
	}
	return worst
}

func (r canaryResult) sticky() bool {
	for _, s := range r.Shares {
		if s.Sticky != s.StickyOf {
			return false
		}
	}
	return len(r.Shares) > 0
}

const canaryClients = 10000

func benchCanary(ctx context.Context, e env) (res canaryResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "canary")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "canary.bench.test"
	deploy := func(msg string) error {
		b, err := makeBundle(e.app, host, msg)
		if err != nil {
			return err
		}
		if err := stage(k.incoming(), "canary", b); err != nil {
			return err
		}
		_, err = publish(k.incoming(), "canary")
		return err
	}
	if err := deploy("live"); err != nil {
		return res, err
	}
	if _, err := waitBody(ctx, k.port, host, "live", 5*time.Millisecond, 60*time.Second); err != nil {
		return res, err
	}
	cfg := filepath.Join(k.root, "keter-config.yaml")
	canary := func(args ...string) error {
		_, err := command(ctx, e.keterBin, append([]string{"canary", "-c", cfg, "canary"}, args...)...)
		return err
	}
	if err := canary("--percent", "0"); err != nil {
		return res, err
	}
	if err := deploy("canary"); err != nil {
		return res, err
	}
	if _, err := k.waitLog(ctx, "canary running", 1, 60*time.Second); err != nil {
		return res, err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(cookie string) (string, string, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", k.port), nil)
		if err != nil {
			return "", "", err
		}
		req.Host = host
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := c.Do(req)
		if err != nil {
			return "", "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		set := ""
		for _, ck := range resp.Cookies() {
			if ck.Name == "keter_canary" {
				set = ck.Name + "=" + ck.Value
			}
		}
		return strings.TrimSpace(string(body)), set, err
	}
	res.Clients = canaryClients
	for _, pct := range []int{5, 20, 50} {
		if err := canary("--percent", strconv.Itoa(pct)); err != nil {
			return res, err
		}
		s := canaryShare{Percent: pct}
		cookies := map[string]string{}
		for range canaryClients {
			body, set, err := get("")
			if err != nil {
				return res, err
			}
			if body == "canary" {
				s.Canary++
			}
			cookies[body] = set
		}
		s.Measured = float64(s.Canary) * 100 / canaryClients
		for v, ck := range cookies {
			for range 100 {
				s.StickyOf++
				if body, _, err := get(ck); err == nil && body == v {
					s.Sticky++
				}
			}
		}
		e.logf("  --percent %d: %d of %d fresh clients on the canary (%.2f%%); %d/%d requests with a cookie kept their version", pct, s.Canary, canaryClients, s.Measured, s.Sticky, s.StickyOf)
		res.Shares = append(res.Shares, s)
	}
	return res, nil
}

// canaryRow is the summary table's line.
func canaryRow(x canaryResult) row {
	var per []string
	for _, s := range x.Shares {
		per = append(per, fmt.Sprintf("%d%% → %.2f%%", s.Percent, s.Measured))
	}
	return row{fmt.Sprintf("16. canary split accuracy: share of %d fresh clients (no cookie) on the canary, per --percent; a client with its cookie keeps its version", x.Clients),
		fmt.Sprintf("%s; worst %.2f points; cookies sticky: %v", strings.Join(per, ", "), x.MaxError(), x.sticky()),
		"within ±2 points, sticky", verdict(len(x.Shares) == 3 && x.MaxError() <= 2 && x.sticky())}
}
