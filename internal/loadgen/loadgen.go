// Package loadgen drives load at a web app the way a strict client does:
// keep-alive connections, no retries, every answer checked to its last
// byte. It speaks to internal/behaveapp's endpoints, through nginx or
// directly, for tests and benchmarks that must prove a redeploy fails no
// request. It knows nothing of keter.
//
// Each worker owns one TCP connection and writes its requests on it by
// hand (Go's http.Transport would retry a request on a kept connection that
// failed before any byte came back, hiding exactly the failures we count).
// It opens a new connection only when the server closed the last one
// cleanly (Connection: close, or a FIN seen before the next request is
// written, as any client notices an idle connection's end) or after a
// failure.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Behaviour is one shape of answer, named after behaveapp's endpoint.
type Behaviour string

// The behaviours: see internal/behaveapp.
const (
	One      Behaviour = "one"      // one write
	Split    Behaviour = "split"    // headers, 20 ms, body
	Stream   Behaviour = "stream"   // chunked lines for 3 s, then "end 30"
	SSE      Behaviour = "sse"      // server-sent events for 3 s, then "event: end"
	Download Behaviour = "download" // 20 MiB, Content-Length and sha256
	Poll     Behaviour = "poll"     // a long poll: 3 s, then the answer
	WS       Behaviour = "ws"       // a WebSocket: a message every 100 ms, echoed
)

// All is every behaviour.
func All() []Behaviour { return []Behaviour{One, Split, Stream, SSE, Download, Poll, WS} }

// Options says where to drive load and how much.
type Options struct {
	// Addr is the host:port to connect to: nginx's listener, or the app.
	Addr string
	// Dial opens connections; nil means TCP from here. A test dials a
	// load balancer inside a network namespace it made this way.
	Dial DialFunc
	// Host is the Host header; empty means Addr.
	Host string
	// Behaviours are the ones to drive; nil means All().
	Behaviours []Behaviour
	// Methods are GET and/or POST (a POST sends a random body of up to
	// 64 KiB whose echo is checked); nil means both. WS ignores them.
	Methods []string
	// WorkersPer is the number of workers, each with its own connection,
	// per behaviour and method (per behaviour for WS); 0 means 2.
	WorkersPer int
	// Timeout bounds each request, from its write to its answer's last
	// byte, and each WebSocket echo; 0 means 15 s.
	Timeout time.Duration
	// Pause is how long a worker waits between two requests; 0 means none.
	Pause time.Duration
	// Cookie, when set, is sent as the Cookie header of every request
	// (a client the canary split keeps on one version).
	Cookie string
	// Maintenance counts a 503 with Retry-After (keter's maintenance
	// page) as Paged instead of Failed: the answer an app in maintenance
	// should give.
	Maintenance bool
}

// DialFunc is net.Dialer.DialContext's shape.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// MaxFailures is how many failure descriptions Counts keeps.
const MaxFailures = 20

// Counts is what one behaviour's workers saw.
//
// Every HTTP request is Sent (from its dial, if it needs one) and then
// either OK or Failed, or neither when Stop or the context cut it. For WS,
// every handshake and every message is Sent and OK when answered as it
// should be; a clean close by the server (a close frame with 1000 or 1001)
// counts in Closed, and a message still awaiting its echo then, or when
// Stop closes the socket, is neither OK nor Failed.
type Counts struct {
	Sent, OK, Failed, Closed int64
	// Paged counts maintenance pages, with Options.Maintenance.
	Paged int64
	// Dialled counts the connections opened (tried): far fewer than Sent
	// while connections are kept.
	Dialled int64
	// FailedBy counts failures per stage (see Failures).
	FailedBy map[string]int64
	// Versions counts OK answers per version (header X-Version).
	Versions map[string]int64
	// FirstStarted is, per version, when its first answer's headers (or,
	// for WS, its first echo) arrived: with a switch's time, how soon a
	// behaviour met the new version.
	FirstStarted map[string]time.Time
	// LastStarted is, per version, when its last answer's headers (or, for
	// WS, its last echo) arrived; LastEnded when its last OK answer ended.
	LastStarted, LastEnded map[string]time.Time
	// Failures describes the first MaxFailures failures, each as
	// "+ELAPSED METHOD PATH: STAGE: ERROR" where STAGE is dial, write,
	// head (no complete response head), status (not 2xx or 101), body (the
	// body or the WebSocket ended early), check (wrong content) or echo
	// (a WebSocket message unanswered in time).
	Failures []string
}

// Result is what a run saw, per behaviour.
type Result struct {
	PerBehaviour map[Behaviour]*Counts
}

// Failed is the number of failures across behaviours.
func (r Result) Failed() int64 {
	var n int64
	for _, c := range r.PerBehaviour {
		n += c.Failed
	}
	return n
}

// String sums the result up, a line per behaviour, failures included.
func (r Result) String() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(r.PerBehaviour)) {
		c := r.PerBehaviour[name]
		fmt.Fprintf(&b, "%s: sent %d ok %d failed %d %v closed %d paged %d dialled %d versions %v\n", name, c.Sent, c.OK, c.Failed, c.FailedBy, c.Closed, c.Paged, c.Dialled, c.Versions)
		for _, f := range c.Failures {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	}
	return b.String()
}

// Run is load under way, from Start to Stop.
type Run struct {
	o     Options
	start time.Time
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu     sync.Mutex
	counts map[Behaviour]*Counts
}

// Start validates o, applies its defaults and starts its workers. They
// issue requests until Stop; the end of ctx cuts them at once.
func Start(ctx context.Context, o Options) (*Run, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &Run{o: o, start: time.Now(), stop: make(chan struct{}), counts: map[Behaviour]*Counts{}}
	for _, b := range o.Behaviours {
		r.counts[b] = &Counts{FailedBy: map[string]int64{}, Versions: map[string]int64{},
			FirstStarted: map[string]time.Time{}, LastStarted: map[string]time.Time{}, LastEnded: map[string]time.Time{}}
	}
	for _, b := range o.Behaviours {
		methods := o.Methods
		if b == WS {
			methods = []string{"GET"}
		}
		for _, m := range methods {
			for range o.WorkersPer {
				r.wg.Add(1)
				go func() {
					defer r.wg.Done()
					if b == WS {
						r.wsWorker(ctx)
					} else {
						r.httpWorker(ctx, b, m)
					}
				}()
			}
		}
	}
	return r, nil
}

func (o *Options) defaults() error {
	if o.Host == "" {
		o.Host = o.Addr
	}
	if o.Behaviours == nil {
		o.Behaviours = All()
	}
	if o.Methods == nil {
		o.Methods = []string{"GET", "POST"}
	}
	if o.WorkersPer == 0 {
		o.WorkersPer = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	var errs []error
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		errs = append(errs, fmt.Errorf("address %q: %w", o.Addr, err))
	}
	for _, b := range o.Behaviours {
		if !slices.Contains(All(), b) {
			errs = append(errs, fmt.Errorf("unknown behaviour %q", b))
		}
	}
	for _, m := range o.Methods {
		if m != "GET" && m != "POST" {
			errs = append(errs, fmt.Errorf("method %q: only GET and POST", m))
		}
	}
	if o.WorkersPer < 0 || o.Timeout < 0 || o.Pause < 0 {
		errs = append(errs, errors.New("negative workers, timeout or pause"))
	}
	return errors.Join(errs...)
}

// Stop stops issuing requests, waits for those under way to end (each
// bounded by Options.Timeout; WebSockets are closed with a close frame)
// and returns what the run saw. Calling it again returns the same.
func (r *Run) Stop() Result {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	return r.Snapshot()
}

// Snapshot returns what the run saw so far.
func (r *Run) Snapshot() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{PerBehaviour: map[Behaviour]*Counts{}}
	for b, c := range r.counts {
		cc := *c
		cc.Versions = maps.Clone(c.Versions)
		cc.FirstStarted = maps.Clone(c.FirstStarted)
		cc.LastStarted = maps.Clone(c.LastStarted)
		cc.LastEnded = maps.Clone(c.LastEnded)
		cc.FailedBy = maps.Clone(c.FailedBy)
		cc.Failures = slices.Clone(c.Failures)
		res.PerBehaviour[b] = &cc
	}
	return res
}

// stopping reports whether Stop was called or ctx ended.
func (r *Run) stopping(ctx context.Context) bool {
	select {
	case <-r.stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// sleep waits d unless the run stops first, and reports whether it did not.
func (r *Run) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return !r.stopping(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.stop:
		return false
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Run) sent(b Behaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[b].Sent++
}

// started records that an answer from version v began; first says it
// may be v's first (an HTTP answer's head or a WebSocket's echo, not its
// handshake).
func (r *Run) started(b Behaviour, v string, first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts[b]
	now := time.Now()
	c.LastStarted[v] = now
	if _, seen := c.FirstStarted[v]; first && !seen {
		c.FirstStarted[v] = now
	}
}

// ok records a whole, correct answer from version v.
func (r *Run) ok(b Behaviour, v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts[b]
	c.OK++
	c.Versions[v]++
	c.LastEnded[v] = time.Now()
}

// maintenancePage counts resp as Paged when it is a maintenance page the
// run accepts; the caller then drains its body.
func (r *Run) maintenancePage(b Behaviour, resp *http.Response) bool {
	if !r.o.Maintenance || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[b].Paged++
	return true
}

func (r *Run) dialled(b Behaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[b].Dialled++
}

func (r *Run) closed(b Behaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[b].Closed++
}

func (r *Run) failed(b Behaviour, method, path string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts[b]
	c.Failed++
	stage := "other"
	if se, ok := errors.AsType[*stageError](err); ok {
		stage = se.stage
	}
	c.FailedBy[stage]++
	if len(c.Failures) < MaxFailures {
		c.Failures = append(c.Failures, fmt.Sprintf("+%.3fs %s %s: %v", time.Since(r.start).Seconds(), method, path, err))
	}
}

// stageError is a failure at one stage of an exchange.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func fail(stage string, err error) error { return &stageError{stage: stage, err: err} }

func failf(stage, format string, args ...any) error {
	return &stageError{stage: stage, err: fmt.Errorf(format, args...)}
}
