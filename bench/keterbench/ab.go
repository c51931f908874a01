package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// The front door comparisons (throughput, gzip, access) run many short
// wrk runs of each contender, round after round, the order rotating every
// round, and report the median of the per-round ratios with their spread:
// on a shared 2-core machine a few long runs mostly measure the load of
// the moment (rounds of one run ranged 0.58-1.11 before).

// contender is one front door a comparison measures.
type contender struct {
	host string
	port int
	into *[]wrkResult
	// units are the parties whose CPU each run records besides wrk's,
	// by name (e.g. "nginx", "app" → a unit).
	units map[string]string
}

// alternate runs e.throughputRounds rounds of one e.round-long wrk run
// per contender (32 connections, extra headers), the first contender of
// round i being i mod len(cs); after each round it calls done (to log).
func alternate(ctx context.Context, e env, cs []contender, done func(round int), headers ...string) error {
	for round := 0; round < e.throughputRounds; round++ {
		for i := range cs {
			c := cs[(i+round)%len(cs)]
			cpu, err := startCPU(ctx, c.units)
			if err != nil {
				return err
			}
			w, err := startWrk(ctx, 32, e.round, c.host, fmt.Sprintf("http://127.0.0.1:%d/", c.port), false, headers...)
			if err != nil {
				return err
			}
			r, err := w.wait()
			if err != nil {
				return err
			}
			used, tcp := cpu.stop()
			for name, d := range used {
				r.CPU[name] = d
			}
			r.TCP = tcp
			*c.into = append(*c.into, r)
		}
		done(round)
	}
	return nil
}

// spread is the median of a/b per round with the quartiles and extremes,
// e.g. "0.981 (IQR 0.952-1.004, range 0.874-1.090, 15 pairs)".
func spread(a, b []wrkResult) string {
	rs := ratios(a, b)
	if len(rs) == 0 {
		return "no pairs"
	}
	s := slices.Clone(rs)
	slices.Sort(s)
	q := func(p float64) float64 { return s[int(p*float64(len(s)-1)+0.5)] }
	return fmt.Sprintf("%.3f (IQR %.3f–%.3f, range %.3f–%.3f, %d pairs)", medianF(rs), q(0.25), q(0.75), s[0], s[len(s)-1], len(s))
}

// startNginxConf runs nginx with conf in dir as a transient unit, as
// keter runs its nginx, and returns a func that stops it.
func startNginxConf(ctx context.Context, dir, conf string) (func(), error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	unit := plainUnit(dir)
	if _, err := command(ctx, "systemd-run", "--unit", unit, "-p", "Type=exec", "nginx", "-p", dir, "-c", path); err != nil {
		return nil, err
	}
	return func() { command(context.WithoutCancel(ctx), "systemctl", "stop", unit) }, nil
}

// plainUnit is the unit startNginxConf runs the nginx in dir as.
func plainUnit(dir string) string {
	return fmt.Sprintf("keterbench-%s-%d.service", filepath.Base(dir), os.Getpid())
}
