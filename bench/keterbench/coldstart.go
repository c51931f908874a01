package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keter-systemd/keter/internal/cgroup"
)

// coldResult: a sleeping app's first request through nginx, from the
// request's send to its answer, which includes systemd starting the app
// (issue 27: < 300 ms for the Go app, < 500 ms for the Warp app).
type coldResult struct {
	GoSocket []time.Duration // bench app, socket-activation: true
	GoProxy  []time.Duration // bench app behind systemd-socket-proxyd
	Warp     []time.Duration // internal/warpapp behind the proxy
	WarpErr  string          `json:",omitempty"`
}

const (
	goalColdGo   = 300 * time.Millisecond
	goalColdWarp = 500 * time.Millisecond
)

// benchColdStart deploys each app with idle-stop: 1s, then rounds times
// waits until it sleeps (its service inactive, its cgroup gone) and times
// one request on a new connection.
func benchColdStart(ctx context.Context, e env, rounds int) (res coldResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "coldstart")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	apps := []struct {
		name, bin string
		body      []byte
		yaml      string
		want      string
		into      *[]time.Duration
	}{
		{"coldgo", "app", e.app, "exec: ../bin/app\nhost: coldgo.bench.test\nargs: [\"--message\", \"cold\"]\nidle-stop: 1s\nsocket-activation: true\n", "cold", &res.GoSocket},
		{"coldproxy", "app", e.app, "exec: ../bin/app\nhost: coldproxy.bench.test\nargs: [\"--message\", \"cold\"]\nidle-stop: 1s\n", "cold", &res.GoProxy},
	}
	if warp, werr := os.ReadFile(e.warpApp); werr == nil {
		apps = append(apps, struct {
			name, bin string
			body      []byte
			yaml      string
			want      string
			into      *[]time.Duration
		}{"coldwarp", "warpapp", warp, "exec: ../bin/warpapp\nhost: coldwarp.bench.test\nargs: [cold]\nidle-stop: 1s\n", "hello from warp cold\n", &res.Warp})
	} else {
		res.WarpErr = fmt.Sprintf("no Warp app (%v): install ghc and libghc-warp-dev", werr)
	}
	for _, a := range apps {
		host := a.name + ".bench.test"
		b, err := makeAppBundle(a.body, a.bin, a.yaml)
		if err != nil {
			return res, err
		}
		if err := stage(k.incoming(), a.name, b); err != nil {
			return res, err
		}
		if _, err := publish(k.incoming(), a.name); err != nil {
			return res, err
		}
		if _, err := untilServed(ctx, k.port, host, a.want, 60*time.Second); err != nil {
			return res, err
		}
		unit, err := webUnit(ctx, a.name)
		if err != nil {
			return res, err
		}
		for i := 0; i < rounds; i++ {
			if err := untilAsleep(ctx, unit, 30*time.Second); err != nil {
				return res, err
			}
			at := time.Now()
			code, body, err := coldGet(ctx, k.port, host)
			took := time.Since(at)
			if err != nil || code != 200 || body != a.want {
				return res, fmt.Errorf("%s: first request to the sleeping app: %d %q %v", a.name, code, body, err)
			}
			*a.into = append(*a.into, took)
			e.logf("  %s cold start %d: %s", a.name, i+1, took.Round(time.Millisecond))
		}
	}
	return res, nil
}

// webUnit is the app's first webapp unit.
func webUnit(ctx context.Context, app string) (string, error) {
	out, err := command(ctx, "systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-"+app+"-*-web0.service")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", fmt.Errorf("no web unit of %s", app)
	}
	return f[0], nil
}

// untilAsleep waits until unit is inactive and its cgroup is gone.
func untilAsleep(ctx context.Context, unit string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		out, err := command(ctx, "systemctl", "show", "--value", "-p", "ActiveState", unit)
		if err == nil && strings.TrimSpace(out) == "inactive" {
			cg, _ := command(ctx, "systemctl", "show", "--value", "-p", "ControlGroup", unit)
			m, merr := cgroup.Mount()
			if merr != nil {
				return merr
			}
			if _, err := os.Stat(filepath.Join(m, "keter.slice", unit)); err != nil && strings.TrimSpace(cg) == "" {
				return sleep(ctx, 200*time.Millisecond) // nothing of it left running
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not go to sleep within %s", unit, within)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// coldGet is freshGet with room for a start.
func coldGet(ctx context.Context, port int, host string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return freshGetWithin(ctx, port, host, 10*time.Second)
}

func (x coldResult) rows() []row {
	rows := []row{
		{fmt.Sprintf("14. cold start through nginx, Go app, socket-activation (median of %d)", len(x.GoSocket)),
			fmt.Sprintf("%s (each: %s)", ms(median(x.GoSocket)), joinDur(x.GoSocket)), "< 300 ms", verdict(len(x.GoSocket) >= 10 && median(x.GoSocket) < goalColdGo)},
		{fmt.Sprintf("14. cold start through nginx, Go app, proxied (median of %d)", len(x.GoProxy)),
			fmt.Sprintf("%s (each: %s)", ms(median(x.GoProxy)), joinDur(x.GoProxy)), "< 300 ms", verdict(len(x.GoProxy) >= 10 && median(x.GoProxy) < goalColdGo)},
	}
	if x.WarpErr != "" {
		return append(rows, row{"14. cold start through nginx, Warp app", x.WarpErr, "< 500 ms", "MISSED"})
	}
	return append(rows, row{fmt.Sprintf("14. cold start through nginx, Warp app, proxied (median of %d)", len(x.Warp)),
		fmt.Sprintf("%s (each: %s)", ms(median(x.Warp)), joinDur(x.Warp)), "< 500 ms", verdict(len(x.Warp) >= 10 && median(x.Warp) < goalColdWarp)})
}

func (x coldResult) details(p func(string, ...any)) {
	p("")
	p("### 14. Cold start of a sleeping app")
	p("")
	p("Each app is deployed with `idle-stop: 1s`; each round waits until its service is inactive and its")
	p("cgroup gone, then times one GET through nginx on a new connection, to the whole answer: systemd")
	p("starts the app while the request waits in the socket's accept queue (docs/idle.md).")
	p("")
	p("- Go app (bench/app), socket-activation: %s", joinDur(x.GoSocket))
	p("- Go app behind systemd-socket-proxyd: %s", joinDur(x.GoProxy))
	if x.WarpErr == "" {
		p("- Warp app (internal/warpapp, GHC -O0) behind systemd-socket-proxyd: %s", joinDur(x.Warp))
	}
}
