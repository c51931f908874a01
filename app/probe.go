package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// probe is one readiness check of a webapp: an HTTP request to its port
// with its own Host header. Without a health path any complete response
// counts (the app speaks HTTP); with one, only 2xx and 3xx.
type probe struct {
	port       int
	host       string
	healthPath string
	client     *http.Client
}

func newProbe(port int, host, healthPath string) *probe {
	tr := &http.Transport{DisableKeepAlives: true}
	return &probe{
		port: port, host: host, healthPath: healthPath,
		client: &http.Client{
			Transport: tr,
			Timeout:   2 * time.Second,
			// A redirect is an answer; following it could leave the app.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// once reports nil when the app answered as ready.
func (p *probe) once(ctx context.Context) error {
	path := p.healthPath
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.port)+path, nil)
	if err != nil {
		return err
	}
	req.Host = p.host
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if p.healthPath != "" && (resp.StatusCode < 200 || resp.StatusCode >= 400) {
		return fmt.Errorf("%s answered %s", path, resp.Status)
	}
	return nil
}

// backoff yields the wait before each next probe: every 2 ms for the
// first 100 ms, since most apps are up within tens of milliseconds and a
// refused loopback connect costs microseconds; then easing off to 250 ms.
func backoff(attempt int) time.Duration {
	const fast = 50
	if attempt < fast {
		return 2 * time.Millisecond
	}
	d := 2 * time.Millisecond << min(attempt-fast+1, 7)
	return min(d, 250*time.Millisecond)
}
