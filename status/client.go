package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// ErrNotRunning means nothing answers on the status socket.
var ErrNotRunning = errors.New("keter is not running (nothing answers on its status socket)")

// ErrPermission means the socket is there but the caller may not use it.
var ErrPermission = errors.New("permission denied on keter's status socket (run as root, or as a member of keter's deploy-group)")

// APIError is an error the daemon answered with.
type APIError struct {
	Code int
	Msg  string
}

func (e *APIError) Error() string { return e.Msg }

// Client is the CLI's side of the unix-socket API.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient talks to the daemon listening on socket.
func NewClient(socket string) *Client {
	return &Client{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := "http://keter" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	return c.send(req, out)
}

// post sends req as JSON to path and decodes the answer into out.
func (c *Client) post(ctx context.Context, path string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.doBody(ctx, "POST", path, body, out)
}

// doBody sends a JSON body.
func (c *Client) doBody(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://keter"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.send(req, out)
}

func (c *Client) send(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %s", ErrNotRunning, c.socket)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w: %s", ErrPermission, c.socket)
	case err != nil:
		return fmt.Errorf("asking keter: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading keter's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return &APIError{Code: resp.StatusCode, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("reading keter's answer: %w", err)
	}
	return nil
}

// Keter reports the daemon's version and state.
func (c *Client) Keter(ctx context.Context) (Keter, error) {
	var k Keter
	return k, c.do(ctx, "GET", "/api/keter", nil, &k)
}

// Apps lists every app with logLines recent lines of its live units.
func (c *Client) Apps(ctx context.Context, logLines int) ([]App, error) {
	var a []App
	return a, c.do(ctx, "GET", "/api/apps", url.Values{"log": {fmt.Sprint(logLines)}}, &a)
}

// App is one app; an unknown one is an *APIError with Code 404.
func (c *Client) App(ctx context.Context, name string, logLines int) (App, error) {
	var a App
	return a, c.do(ctx, "GET", "/api/apps/"+url.PathEscape(name), url.Values{"log": {fmt.Sprint(logLines)}}, &a)
}

// Wait blocks until the bundle with digest, placed as NAME.keter in
// incoming at or after since, is live or refused, or ctx ends.
func (c *Client) Wait(ctx context.Context, name, digest string, since time.Time) (WaitResult, error) {
	var r WaitResult
	q := url.Values{"digest": {digest}, "since": {since.Format(time.RFC3339Nano)}}
	return r, c.do(ctx, "GET", "/api/apps/"+url.PathEscape(name)+"/wait", q, &r)
}

// Rollback puts the previous kept bundle back and returns its digest.
func (c *Client) Rollback(ctx context.Context, name string) (string, error) {
	var r struct{ Digest string }
	return r.Digest, c.do(ctx, "POST", "/api/apps/"+url.PathEscape(name)+"/rollback", nil, &r)
}

// RollbackTo puts the kept bundle with digest back.
func (c *Client) RollbackTo(ctx context.Context, name, digest string) (string, error) {
	var r struct{ Digest string }
	return r.Digest, c.do(ctx, "POST", "/api/apps/"+url.PathEscape(name)+"/rollback", url.Values{"digest": {digest}}, &r)
}

// DropDatabase drops an app's postgres database and role.
func (c *Client) DropDatabase(ctx context.Context, name string) error {
	return c.do(ctx, "POST", "/api/apps/"+url.PathEscape(name)+"/postgres/drop", nil, nil)
}
