package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// recoveryResult: how long the front door serves nothing after a crash.
// Crash: the app's process SIGKILLed, until nginx serves it again (systemd
// restarts it after RestartSec). Nginx: keter's managed nginx's master
// SIGKILLed under wrk load, until it serves again.
type recoveryResult struct {
	Crash []time.Duration
	Nginx []time.Duration
	// NginxLoad is the wrk load the nginx kills ran under.
	NginxLoad wrkResult
	// Restarts keter logged for its nginx ("nginx restarted").
	NginxRestartsLogged int
}

// freshGet fetches / with a new connection: after a kill a kept one would
// only report the kill.
func freshGet(ctx context.Context, port int, host string) (int, string, error) {
	return freshGetWithin(ctx, port, host, time.Second)
}

// freshGetWithin is freshGet with a bound on the whole exchange.
func freshGetWithin(ctx context.Context, port int, host string, within time.Duration) (int, string, error) {
	c := &http.Client{Timeout: within, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 200 * time.Millisecond}).DialContext}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+strconv.Itoa(port)+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String(), nil
}

// untilServed polls every 2 ms until host answers 200 with body on fresh
// connections; it returns when that answer came.
func untilServed(ctx context.Context, port int, host, body string, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		code, got, err := freshGet(ctx, port, host)
		now := time.Now()
		if err == nil && code == 200 && got == body {
			return now, nil
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s not served again within %s (last: %d %q %v)", host, within, code, got, err)
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return now, err
		}
	}
}

func benchRecovery(ctx context.Context, e env, rounds int) (res recoveryResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "recovery")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "recovery.bench.test"
	b, err := makeBundle(e.app, host, "alive")
	if err != nil {
		return res, err
	}
	if err := stage(k.incoming(), "recovery", b); err != nil {
		return res, err
	}
	if _, err := publish(k.incoming(), "recovery"); err != nil {
		return res, err
	}
	if _, err := untilServed(ctx, k.port, host, "alive", 60*time.Second); err != nil {
		return res, err
	}
	entries, err := k.waitLog(ctx, "unit started", 1, 30*time.Second)
	if err != nil {
		return res, err
	}
	appUnit := filter(entries, "unit started")[0].fields["unit"]

	for i := 0; i < rounds; i++ {
		pid, err := unitPID(ctx, appUnit)
		if err != nil {
			return res, err
		}
		at := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return res, fmt.Errorf("killing the app (pid %d): %w", pid, err)
		}
		back, err := untilServed(ctx, k.port, host, "alive", 30*time.Second)
		if err != nil {
			return res, err
		}
		res.Crash = append(res.Crash, back.Sub(at))
		e.logf("  app SIGKILL %d: serving again after %s", i+1, back.Sub(at).Round(time.Millisecond))
		if err := sleep(ctx, 1500*time.Millisecond); err != nil { // as if apart: not a crash loop
			return res, err
		}
	}

	w, err := startWrk(ctx, 16, time.Duration(rounds)*3*time.Second+5*time.Second, host, fmt.Sprintf("http://127.0.0.1:%d/", k.port), true)
	if err != nil {
		return res, err
	}
	for i := 0; i < min(rounds, 5); i++ {
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
		pid, err := unitPID(ctx, nginxUnit)
		if err != nil {
			w.stop()
			return res, err
		}
		at := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			w.stop()
			return res, fmt.Errorf("killing nginx (pid %d): %w", pid, err)
		}
		// Until systemd has killed the old workers they may still answer
		// on the inherited sockets: served again means by a new master.
		if err := untilNewPID(ctx, nginxUnit, pid, 30*time.Second); err != nil {
			w.stop()
			return res, err
		}
		back, err := untilServed(ctx, k.port, host, "alive", 30*time.Second)
		if err != nil {
			w.stop()
			return res, err
		}
		res.Nginx = append(res.Nginx, back.Sub(at))
		e.logf("  nginx SIGKILL %d under load: serving again after %s", i+1, back.Sub(at).Round(time.Millisecond))
	}
	w.stop()
	if res.NginxLoad, err = w.wait(); err != nil {
		return res, err
	}
	// keter looks at nginx every 250 ms: give it time to see the last kill.
	if entries, err := k.waitLog(ctx, "nginx restarted", len(res.Nginx), 5*time.Second); entries != nil {
		res.NginxRestartsLogged = count(entries, "nginx restarted")
	} else if err != nil {
		return res, err
	}
	return res, nil
}

// untilNewPID waits until unit has a main process other than old.
func untilNewPID(ctx context.Context, unit string, old int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if pid, err := unitPID(ctx, unit); err == nil && pid != old {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s had no new main process %s after its old one (pid %d) was killed", unit, within, old)
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}
