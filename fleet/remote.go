package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/atomicfile"
	"github.com/keter-systemd/keter/status"
)

// Remote is a host's side: what `keter remote …` runs, started by ssh
// from an operator's `keter … --hosts`. It talks to the local daemon
// through its socket as the local CLI does.
type Remote struct {
	Incoming string // the keter root's incoming folder
	Client   *status.Client
	Out      io.Writer // protocol lines (stdout)
	// Timeout bounds one deploy's wait, as keter deploy --timeout.
	Timeout time.Duration

	mu sync.Mutex
}

func (r *Remote) send(m Message) {
	data, _ := json.Marshal(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.Out, "%s%s\n", Prefix, data)
}

// command is one request read from the session's stdin.
type command struct {
	verb   string // start, deploy, rollback
	name   string
	bundle string // deploy: the received bundle, a temp file
	err    error
}

// Session takes app's rollout lock (waiting for it if wait), answers
// "locked" and then serves commands from in until in ends: the end of
// the operator's ssh session, which also ends the lock.
func (r *Remote) Session(ctx context.Context, in io.Reader, name string, h Holder, wait bool) error {
	if err := bundle.ValidAppName(name); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmds := make(chan command)
	dir := lockDir(r.Incoming)
	go func() {
		defer cancel() // stdin ended: the operator is gone
		defer close(cmds)
		readCommands(ctx, bufio.NewReader(in), dir, cmds)
	}()
	h.Since = time.Now()
	l, holder, err := tryLock(dir, name, h)
	if errors.Is(err, ErrBusy) && wait {
		l, err = waitLock(ctx, dir, name, h, func(holder *Holder) { r.send(Message{Event: EventWaiting, Holder: holder}) })
	}
	if errors.Is(err, ErrBusy) {
		r.send(Message{Event: EventBusy, Holder: holder})
		return fmt.Errorf("rollout of %s: %w", name, err)
	}
	if err != nil {
		return err
	}
	defer l.release()
	// Bundles a killed session was receiving for this app.
	if stale, _ := filepath.Glob(filepath.Join(dir, name+".recv-*")); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	r.send(Message{Event: EventLocked, Live: r.live(ctx, name)})
	for c := range cmds {
		if c.err != nil {
			return c.err
		}
		switch c.verb {
		case "start":
			r.writeRecord(name, record{Rollout: h.Rollout, At: time.Now()})
		case "deploy":
			if c.name != name {
				os.Remove(c.bundle)
				return fmt.Errorf("bundle for %s sent to the session of %s", c.name, name)
			}
			m := r.deploy(ctx, name, c.bundle, h.Rollout)
			os.Remove(c.bundle)
			r.send(m)
		case "rollback":
			r.send(r.rollback(ctx, name))
		}
	}
	return nil
}

// readCommands reads "start", "rollback" and "deploy NAME SIZE" followed
// by SIZE bytes of bundle, which it saves in dir (next to the lock, so a
// killed session's leftover is found and removed by the next one).
func readCommands(ctx context.Context, in *bufio.Reader, dir string, cmds chan<- command) {
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		c := command{}
		switch {
		case len(f) == 1 && (f[0] == "start" || f[0] == "rollback"):
			c.verb = f[0]
		case len(f) == 3 && f[0] == "deploy":
			c.verb, c.name = f[0], f[1]
			size, err := strconv.ParseInt(f[2], 10, 64)
			if err == nil {
				err = bundle.ValidAppName(c.name)
			}
			if err == nil {
				c.bundle, err = receive(in, dir, c.name, size)
			}
			c.err = err
		default:
			c.err = fmt.Errorf("unknown command %q from the operator's keter (versions differ?)", strings.TrimSpace(line))
		}
		select {
		case cmds <- c:
		case <-ctx.Done():
			return
		}
		if c.err != nil {
			return
		}
	}
}

// receive saves size bytes of in to a file in dir.
func receive(in io.Reader, dir, name string, size int64) (string, error) {
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return "", fmt.Errorf("receiving bundle: %w", err)
	}
	f, err := os.CreateTemp(dir, name+".recv-*.keter")
	if err != nil {
		return "", fmt.Errorf("receiving bundle: %w", err)
	}
	_, err = io.CopyN(f, in, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("receiving bundle: %w", err)
	}
	return f.Name(), nil
}

// live is the app's live version, nil when none (or keter cannot say).
func (r *Remote) live(ctx context.Context, name string) *Version {
	a, err := r.Client.App(ctx, name, 0)
	if err != nil || a.Live == nil {
		return nil
	}
	return &Version{Version: a.Live.Version, Digest: a.Live.Digest}
}

// deploy is `keter deploy FILE` on this host: check, place as
// NAME.keter, wait for keter's verdict.
func (r *Remote) deploy(ctx context.Context, name, file, rollout string) Message {
	failed := func(err error) Message {
		return Message{Event: EventResult, Result: ResultFailed, Error: err.Error(), Live: r.live(ctx, name)}
	}
	_, warns, err := bundle.CheckWithWarnings(ctx, file)
	if err != nil {
		return failed(fmt.Errorf("not a valid bundle:\n%w", err))
	}
	if _, err := r.Client.Keter(ctx); err != nil {
		return failed(err)
	}
	before := r.live(ctx, name)
	since := time.Now()
	digest, err := app.CopyAtomic(file, filepath.Join(r.Incoming, name+".keter"), 0o644)
	if err != nil {
		return failed(err)
	}
	m := r.await(ctx, name, digest, since)
	m.Warnings = warns
	rec := record{Rollout: rollout, Reached: true, Replaced: before, At: time.Now()}
	if m.Result == ResultLive {
		rec.Deployed = m.Live
	}
	r.writeRecord(name, rec)
	return m
}

// await waits for a placed bundle's outcome, as keter deploy does.
func (r *Remote) await(ctx context.Context, name, digest string, since time.Time) Message {
	wctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	res, err := r.Client.Wait(wctx, name, digest, since)
	m := Message{Event: EventResult, Result: ResultFailed}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		m.Error = fmt.Sprintf("bundle %.12s is not live after %s; keter keeps trying", digest, r.Timeout)
	case err != nil:
		m.Error = fmt.Sprintf("waiting for the deploy: %v", err)
	case res.Result == app.ResultLive:
		m.Result = ResultLive
	default:
		m.Error = res.Error
	}
	if res.App != nil {
		if res.App.Live != nil {
			m.Live = &Version{Version: res.App.Live.Version, Digest: res.App.Live.Digest}
		}
		if m.Result == ResultFailed {
			m.Hint, m.Log = res.App.LastHint, res.App.LastLog
		}
	}
	if m.Live != nil && m.Result == ResultLive {
		m.Version = m.Live.Version
	}
	return m
}

// rollback brings back what this host's last rollout replaced, if that
// rollout reached it.
func (r *Remote) rollback(ctx context.Context, name string) Message {
	unchanged := func(why string) Message {
		return Message{Event: EventResult, Result: ResultUnchanged, Error: why, Live: r.live(ctx, name)}
	}
	rec, err := r.readRecord(name)
	switch {
	case err != nil:
		return unchanged("no deploy --hosts recorded here")
	case !rec.Reached:
		return unchanged("the last deploy --hosts did not reach this host")
	case rec.RolledBack:
		return unchanged("already rolled back")
	case rec.Replaced == nil:
		return unchanged("no version ran here before the last deploy --hosts")
	}
	if live := r.live(ctx, name); live != nil && live.Digest == rec.Replaced.Digest {
		return unchanged("already runs the version the last deploy --hosts replaced")
	}
	since := time.Now()
	digest, err := r.Client.RollbackTo(ctx, name, rec.Replaced.Digest)
	var ae *status.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusConflict {
		err = fmt.Errorf("version %s (bundle %.12s) is no longer kept here: %w", rec.Replaced.Version, rec.Replaced.Digest, err)
	}
	if err != nil {
		return Message{Event: EventResult, Result: ResultFailed, Error: err.Error(), Live: r.live(ctx, name)}
	}
	m := r.await(ctx, name, digest, since)
	if m.Result == ResultLive {
		rec.RolledBack = true
		r.writeRecord(name, *rec)
	}
	return m
}

func (r *Remote) recordPath(name string) string {
	return filepath.Join(lockDir(r.Incoming), name+".json")
}

// writeRecord is best effort: a lost record only makes a later rollback
// --hosts leave this host alone.
func (r *Remote) writeRecord(name string, rec record) {
	data, _ := json.Marshal(rec)
	if err := atomicfile.Write(r.recordPath(name), data, 0o660); err != nil {
		fmt.Fprintf(os.Stderr, "keter: recording the rollout: %v\n", err)
	}
}

func (r *Remote) readRecord(name string) (*record, error) {
	data, err := os.ReadFile(r.recordPath(name))
	if err != nil {
		return nil, err
	}
	var rec record
	return &rec, json.Unmarshal(data, &rec)
}

// Status answers every app's live version on this host.
func (r *Remote) Status(ctx context.Context) error {
	apps, err := r.Client.Apps(ctx, 0)
	if err != nil {
		return err
	}
	m := Message{Event: EventApps, Apps: []AppVersion{}}
	for _, a := range apps {
		v := AppVersion{Name: a.Name, Deploying: a.Deploying, LastResult: a.LastResult, Maintenance: a.Maintenance != nil}
		if a.Live != nil {
			v.Version, v.Digest = a.Live.Version, a.Live.Digest
		}
		m.Apps = append(m.Apps, v)
	}
	r.send(m)
	return nil
}

// Maintenance turns maintenance on or off for app on this host.
func (r *Remote) Maintenance(ctx context.Context, name string, on bool, message string) error {
	a, err := r.Client.Maintenance(ctx, name, on, message)
	if err != nil {
		return err
	}
	m := Message{Event: EventResult, Result: "off"}
	if on {
		m.Result = "on"
	}
	if a.Live != nil {
		m.Live = &Version{Version: a.Live.Version, Digest: a.Live.Digest}
	}
	r.send(m)
	return nil
}
