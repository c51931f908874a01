package dbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/unitgen"
)

// DefaultJobTimeout bounds the wait for a job when the context has no
// earlier deadline. Stopping waits for the unit's own stop timeout, so this
// must exceed the longest one keter sets.
const DefaultJobTimeout = 2 * time.Minute

// redialFor is how long a dropped connection is retried: long enough for
// systemd to re-execute.
const redialFor = 10 * time.Second

// ErrJob classes a job that ended with a result other than "done".
var ErrJob = errors.New("systemd job did not succeed")

// maxSubmits bounds the jobs being submitted to systemd at once: systemd
// answers one call at a time, and a burst of submissions (1000 bundles
// dropped at once) would queue every other call (readiness checks, status
// reads) behind it. Waiting for results is not bounded (see jobResults).
const maxSubmits = 4

// Client is a connection to systemd. Its methods are safe for concurrent use.
type Client struct {
	mu      sync.Mutex
	submits chan struct{} // see maxSubmits
	conn    *link
	dial    func(context.Context) (*link, error)
	// JobTimeout bounds each job wait; zero means DefaultJobTimeout.
	JobTimeout time.Duration
	// TransientDir is where systemd writes transient unit files; empty
	// means TransientDir (see RepairTransient).
	TransientDir string
}

// New connects to systemd's private socket. It needs root.
func New(ctx context.Context) (*Client, error) {
	c := &Client{dial: dialSystemd, submits: make(chan struct{}, maxSubmits)}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd: %w", err)
	}
	c.conn = conn
	return c, nil
}

// Close ends the connection.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// link is one connection to systemd, go-systemd's calls and every signal
// keter follows on it.
type link struct {
	conn    *sddbus.Conn
	signals *hub
}

func (l *link) Close() { l.conn.Close() }

// dialSystemd connects the way sddbus.NewSystemdConnectionContext does,
// but on one connection where go-systemd asks for two (one for its
// signals): systemd sends every signal to each direct connection, and each
// costs keter a full decode (see hub).
func dialSystemd(ctx context.Context) (*link, error) {
	l := &link{signals: newHub()}
	var bus *godbus.Conn
	conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		if bus != nil {
			return bus, nil
		}
		b, err := dialPrivate(ctx)
		if err != nil {
			return nil, err
		}
		// The first call, before go-systemd's own (an AddMatch it
		// waits for with no timeout), is one that is repeated.
		obj := b.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
		if err := warmUp(ctx, func(ctx context.Context) error {
			return obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Manager", "SystemState").Err
		}); err != nil {
			b.Close()
			return nil, err
		}
		// systemd sends unit changes to direct connections whether or
		// not they subscribed; subscribing costs nothing and does not
		// rely on it.
		if err := obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
			b.Close()
			return nil, err
		}
		sigs := make(chan *godbus.Signal, 1024)
		b.Signal(sigs)
		go l.signals.run(sigs) // ends when b closes
		bus = b
		return bus, nil
	})
	if err != nil {
		return nil, err
	}
	l.conn = conn
	return l, nil
}

// dialPrivate opens an authenticated connection to systemd's private
// socket; it closes when ctx ends.
func dialPrivate(ctx context.Context) (*godbus.Conn, error) {
	conn, err := godbus.Dial("unix:path=/run/systemd/private", godbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// warmUp makes a first call on a new connection, repeating it after short
// timeouts. systemd 252 sometimes leaves the first message that follows
// authentication unread until more data arrives on the socket (seen in the
// sandbox: the call hung until a second one was sent), so a lone first
// call could wait forever.
func warmUp(ctx context.Context, call func(context.Context) error) error {
	var err error
	for d := 250 * time.Millisecond; d <= 8*time.Second; d *= 2 {
		tctx, cancel := context.WithTimeout(ctx, d)
		err = call(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			break
		}
		slog.Debug("repeating first call to systemd", "after", d)
	}
	return err
}

// current returns a live connection, dialling when there is none.
func (c *Client) current(ctx context.Context) (*link, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil && conn.conn.Connected() {
		return conn, nil
	}
	return c.redial(ctx, conn)
}

// redial replaces old (if it is still the current connection) with a new one.
func (c *Client) redial(ctx context.Context, old *link) (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && c.conn != old && c.conn.conn.Connected() {
		return c.conn, nil // another caller already redialled
	}
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	slog.Debug("redialling systemd")
	var err error
	deadline := time.Now().Add(redialFor)
	for {
		var conn *link
		if conn, err = c.dial(ctx); err == nil {
			c.conn = conn
			return conn, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reconnecting to systemd: %w", errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("reconnecting to systemd: %w", err)
}

// do runs fn and, when it fails because the bus dropped, redials and runs
// it once more.
func (c *Client) do(ctx context.Context, fn func(*sddbus.Conn) error) error {
	return c.doLink(ctx, func(l *link) error { return fn(l.conn) })
}

func (c *Client) doLink(ctx context.Context, fn func(*link) error) error {
	conn, err := c.current(ctx)
	if err != nil {
		return err
	}
	err = fn(conn)
	if err == nil || !dropped(err, conn.conn) {
		return err
	}
	conn, rerr := c.redial(ctx, conn)
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	return fn(conn)
}

func dropped(err error, conn *sddbus.Conn) bool {
	return !conn.Connected() || errors.Is(err, godbus.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *Client) jobTimeout() time.Duration {
	if c.JobTimeout > 0 {
		return c.JobTimeout
	}
	return DefaultJobTimeout
}

// job submits a job with start, which returns its id, and waits for its
// result. start must pass go-systemd no channel (see jobResults).
func (c *Client) job(ctx context.Context, what, name string, start func(*sddbus.Conn) (int, error)) error {
	return c.jobWithin(ctx, what, name, c.jobTimeout(), start)
}

// jobWithin is job bounded by timeout instead of the client's job
// timeout; 0 leaves the bound to ctx alone.
func (c *Client) jobWithin(ctx context.Context, what, name string, timeout time.Duration, start func(*sddbus.Conn) (int, error)) error {
	var conn *link
	var id int
	if c.submits != nil {
		select {
		case c.submits <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("submitting %s of %s: %w", what, name, ctx.Err())
		}
	}
	err := c.doLink(ctx, func(l *link) error {
		conn = l
		var err error
		id, err = start(l.conn)
		return err
	})
	if c.submits != nil {
		<-c.submits
	}
	if err != nil {
		return err
	}
	ch := conn.signals.results.wait(uint32(id))
	defer conn.signals.results.forget(uint32(id))
	var expired <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	// A dropped bus never delivers the result; notice it instead of waiting.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case res := <-ch:
			slog.Debug("systemd job finished", "unit", name, "job", what, "result", res)
			if res != "done" {
				return fmt.Errorf("job result %q: %w", res, ErrJob)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s of %s: %w", what, name, ctx.Err())
		case <-expired:
			return fmt.Errorf("waiting for %s of %s: no result after %s", what, name, timeout)
		case <-tick.C:
			if !conn.conn.Connected() {
				return fmt.Errorf("waiting for %s of %s: connection to systemd dropped", what, name)
			}
		}
	}
}

// Start starts u as a transient unit and waits until systemd has executed
// its main process (Type=exec). A failure names the unit and the job
// result; the unit's journal is the caller's to read (app lines are not
// for every reader of an error). The caller must have written u.Secrets
// to u.EnvFile first.
func (c *Client) Start(ctx context.Context, u unitgen.Unit) error {
	return c.StartTransient(ctx, u.Name, u.Properties)
}

// StartTransient starts a transient unit with the given properties and
// waits for the job. A failed or dead unit left under the same name is
// reset and replaced once.
func (c *Client) StartTransient(ctx context.Context, name string, props []sddbus.Property) error {
	start := func(conn *sddbus.Conn) (int, error) {
		return conn.StartTransientUnitContext(ctx, name, "fail", props, nil)
	}
	err := c.job(ctx, "start", name, start)
	if err != nil && isDBusError(err, "org.freedesktop.systemd1.UnitExists") {
		state, serr := c.ActiveState(ctx, name)
		if serr == nil && (state == "failed" || state == "inactive") {
			_ = c.ResetFailed(ctx, name) // an inactive unit has nothing to reset
			err = c.job(ctx, "start", name, start)
		}
	}
	if err != nil {
		return fmt.Errorf("starting unit %s: %w", name, err)
	}
	if _, err := repairFile(filepath.Join(c.transientDir(), name)); err != nil {
		// The unit runs; only a later daemon-reload would lose its hooks.
		slog.Warn("repairing transient unit file", "unit", name, "err", err)
	}
	return nil
}

// Stop stops a unit and waits until it is down, then clears a failed
// state so systemd collects it (a oneshot stopped mid-run, such as a
// release step, ends failed). A unit that is not loaded counts as stopped.
func (c *Client) Stop(ctx context.Context, name string) error {
	err := c.job(ctx, "stop", name, func(conn *sddbus.Conn) (int, error) {
		return conn.StopUnitContext(ctx, name, "replace", nil)
	})
	if isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stopping unit %s: %w", name, err)
	}
	return c.ResetFailed(ctx, name)
}

// Reload runs the unit's ExecReload and waits for it.
func (c *Client) Reload(ctx context.Context, name string) error {
	err := c.job(ctx, "reload", name, func(conn *sddbus.Conn) (int, error) {
		return conn.ReloadUnitContext(ctx, name, "replace", nil)
	})
	if err != nil {
		return fmt.Errorf("reloading unit %s: %w", name, err)
	}
	return nil
}

// Signal sends sig to the unit's main process, with no job and no helper
// process: the quickest way to ask nginx to reload.
func (c *Client) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		return conn.KillUnitWithTarget(ctx, name, sddbus.Main, int32(sig))
	})
	if err != nil {
		return fmt.Errorf("sending %s to unit %s: %w", sig, name, err)
	}
	return nil
}

// ResetFailed clears a unit's failed state so it can be collected. A unit
// that is not loaded is not an error.
func (c *Client) ResetFailed(ctx context.Context, name string) error {
	err := c.do(ctx, func(conn *sddbus.Conn) error { return conn.ResetFailedUnitContext(ctx, name) })
	if err != nil && !isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		return fmt.Errorf("resetting failed unit %s: %w", name, err)
	}
	return nil
}

// ActiveState is the unit's ActiveState; a unit that is not loaded is
// "inactive".
func (c *Client) ActiveState(ctx context.Context, name string) (string, error) {
	var state string
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		p, err := conn.GetUnitPropertyContext(ctx, name, "ActiveState")
		if err != nil {
			return err
		}
		s, ok := p.Value.Value().(string)
		if !ok {
			return fmt.Errorf("ActiveState is %s, not a string", p.Value.Signature())
		}
		state = s
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading state of unit %s: %w", name, err)
	}
	return state, nil
}

// MainPID is the unit's main process; 0 when it has none or is not loaded.
func (c *Client) MainPID(ctx context.Context, name string) (uint32, error) {
	var pid uint32
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		p, err := conn.GetServicePropertyContext(ctx, name, "MainPID")
		if err != nil {
			return err
		}
		pid, _ = p.Value.Value().(uint32)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading the main process of unit %s: %w", name, err)
	}
	return pid, nil
}

// List returns every loaded unit whose name starts with prefix, failed ones
// included, with the metadata keter gave it.
func (c *Client) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	out, err := c.states(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for i, s := range out {
		if !strings.HasSuffix(s.Name, ".service") {
			continue
		}
		if out[i], err = c.withService(ctx, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withService adds a service's properties to its state.
func (c *Client) withService(ctx context.Context, s unitgen.Status) (unitgen.Status, error) {
	props, err := c.serviceProps(ctx, s.Name)
	if err != nil {
		return s, fmt.Errorf("reading unit %s: %w", s.Name, err)
	}
	s.MainPID, _ = props["MainPID"].(uint32)
	s.NRestarts, _ = props["NRestarts"].(uint32)
	s.Result, _ = props["Result"].(string)
	s.ExecMainCode, _ = props["ExecMainCode"].(int32)
	s.ExecMainStatus, _ = props["ExecMainStatus"].(int32)
	s.Usage = usageOf(props)
	return owned(s), nil
}

// Status is what List says of one unit, read by name (see State); found
// is false for a unit that is not loaded. Deploys waiting for their apps
// ask it of each new unit several times a second.
func (c *Client) Status(ctx context.Context, name string) (st unitgen.Status, found bool, err error) {
	st, found, err = c.State(ctx, name)
	if err != nil || !found || !strings.HasSuffix(name, ".service") {
		return st, found, err
	}
	st, err = c.withService(ctx, st)
	return st, err == nil, err
}

// Health is State with the three service properties that say whether a
// unit gave up or crash-loops (NRestarts, MainPID, Result), read one by
// one: a GetAll of the Service interface makes systemd serialise some 200
// properties (exec commands, sandbox settings), and a deploy waiting for
// its app asks this five times a second. Figures are not read.
func (c *Client) Health(ctx context.Context, name string) (st unitgen.Status, found bool, err error) {
	st, found, err = c.State(ctx, name)
	if err != nil || !found || !strings.HasSuffix(name, ".service") {
		return st, found, err
	}
	err = c.do(ctx, func(conn *sddbus.Conn) error {
		for _, p := range []struct {
			name string
			set  func(any)
		}{
			{"NRestarts", func(v any) { st.NRestarts, _ = v.(uint32) }},
			{"MainPID", func(v any) { st.MainPID, _ = v.(uint32) }},
			{"Result", func(v any) { st.Result, _ = v.(string) }},
		} {
			prop, err := conn.GetUnitTypePropertyContext(ctx, name, "Service", p.name)
			if err != nil {
				return err
			}
			p.set(prop.Value.Value())
		}
		return nil
	})
	if err != nil {
		return st, false, fmt.Errorf("reading unit %s: %w", name, err)
	}
	return owned(st), true, nil
}

// State is one unit's name, metadata, ActiveState and SubState; found
// is false for a unit that is not loaded. systemd looks the unit up by
// name (ListUnitsByNames), where List's pattern makes it match every
// unit it has, and no service properties are read: readiness checks ask
// this of each new unit, a thousand at a time after a reboot.
func (c *Client) State(ctx context.Context, name string) (st unitgen.Status, found bool, err error) {
	var units []sddbus.UnitStatus
	err = c.do(ctx, func(conn *sddbus.Conn) error {
		var err error
		units, err = conn.ListUnitsByNamesContext(ctx, []string{name})
		return err
	})
	if err != nil {
		return st, false, fmt.Errorf("reading state of unit %s: %w", name, err)
	}
	for _, u := range units {
		if u.Name == name && u.LoadState != "not-found" {
			return owned(unitgen.Status{Name: u.Name, ActiveState: u.ActiveState, SubState: u.SubState, Meta: meta(u.Name, u.Description)}), true, nil
		}
	}
	return st, false, nil
}

// states is List without each service's properties: name, metadata,
// ActiveState and SubState, in one call.
func (c *Client) states(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	var units []sddbus.UnitStatus
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		var err error
		units, err = conn.ListUnitsByPatternsContext(ctx, nil, []string{globEscape(prefix) + "*"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing units %s*: %w", prefix, err)
	}
	var out []unitgen.Status
	for _, u := range units {
		if u.LoadState == "not-found" || !strings.HasPrefix(u.Name, prefix) {
			continue
		}
		out = append(out, owned(unitgen.Status{Name: u.Name, ActiveState: u.ActiveState, SubState: u.SubState, Meta: meta(u.Name, u.Description)}))
	}
	return out, nil
}

func meta(name, description string) unitgen.Meta {
	if m, ok := unitgen.ParseMeta(description); ok {
		return m
	}
	m, _ := unitgen.ParseUnitName(name)
	return m
}

// globEscape makes a literal prefix safe inside an fnmatch pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isDBusError(err error, name string) bool {
	var de godbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *godbus.Error
	return errors.As(err, &dp) && dp.Name == name
}

// serviceProps reads a service unit's Service-interface properties.
func (c *Client) serviceProps(ctx context.Context, name string) (map[string]any, error) {
	var props map[string]any
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		var err error
		props, err = conn.GetUnitTypePropertiesContext(ctx, name, "Service")
		return err
	})
	return props, err
}
