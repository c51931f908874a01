package nginx

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// loadTimeout bounds the wait for nginx to switch to a reloaded config.
const loadTimeout = 15 * time.Second

// oldWorkerGrace: on a reload nginx starts the new workers, sleeps 100 ms
// and only then tells the old ones to stop accepting
// (ngx_master_process_cycle), so until then a new connection may still
// meet the old config. Only answers from the new config for longer than
// that mean the switch is done.
const oldWorkerGrace = 130 * time.Millisecond

// waitLoaded polls the control server until nginx answers with gen. A
// reload job is done once nginx got the signal; nginx reads the new config
// after that, and keeps the old one if it cannot apply it (a port taken by
// another program), which only this notices.
// It returns when nginx first answered with gen.
func (m *Manager) waitLoaded(ctx context.Context, gen string) (time.Time, error) {
	if gen == "" || len(m.g.Listeners) == 0 {
		return time.Now(), nil
	}
	l := m.g.Listeners[0]
	host := l.Host
	switch host {
	case "", "*", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	scheme := "http"
	if l.Secure() {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(l.Port)) + ControlPath
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true, // a kept connection could stay with an old worker
			// Our own nginx on our own listener: only the generation is read.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: ControlHost},
		},
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	last := "no answer"
	var first time.Time // nginx's first answer with gen
	// Poll often: a deploy is live only once this returns.
	for wait := time.Millisecond; ; wait = min(wait*2, 5*time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		req.Host = ControlHost
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == gen {
				// The new workers exist, so the old ones are told to stop
				// within nginx's 100 ms; old answers until then are normal.
				if first.IsZero() {
					first = time.Now()
					wait = oldWorkerGrace
				}
				if time.Since(first) >= oldWorkerGrace {
					return first, nil
				}
			} else if first.IsZero() {
				last = fmt.Sprintf("%s %q", resp.Status, body)
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("nginx did not switch to the new config (generation %s) within %s; last answer from %s: %s; see journalctl -u %s",
				gen, loadTimeout, url, last, m.unit)
		case <-time.After(wait):
		}
	}
}
