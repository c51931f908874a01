package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrFailed means at least one host failed; the report says which.
var ErrFailed = errors.New("rollout failed")

// Options say where and how to roll out.
type Options struct {
	Hosts    []string
	Parallel int  // hosts at a time; 0 means 1
	Wait     bool // wait for another rollout's lock instead of refusing
	// SSH is the ssh client to run; empty means "ssh" from PATH.
	SSH string
	// Timeout bounds each host's wait for one deploy or rollback (the
	// host's keter keeps trying after it); 0 means the host's default.
	Timeout time.Duration
	// Out gets one line per host as it finishes, then the summary.
	Out io.Writer
}

func (o *Options) defaults() {
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.SSH == "" {
		o.SSH = "ssh"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
}

// Outcome is what one host ended with.
type Outcome struct {
	Host    string
	Reached bool   // a step ran there
	Result  string // live, failed, unchanged; "" when not reached
	Before  *Version
	Live    *Version // what serves there after the rollout, as it said
	Error   string
	Took    time.Duration
	// Lost means the host stopped answering: what serves there is unknown.
	Lost bool
}

// me is the lock's holder: this operator.
func me() Holder {
	h := Holder{PID: os.Getpid(), User: "unknown", Machine: "unknown"}
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	if n, err := os.Hostname(); err == nil {
		h.Machine = n
	}
	b := make([]byte, 8)
	rand.Read(b)
	h.Rollout = hex.EncodeToString(b)
	return h
}

// Deploy rolls the bundle out as app, Parallel hosts at a time.
func Deploy(ctx context.Context, o Options, app, bundlePath string) ([]Outcome, error) {
	fi, err := os.Stat(bundlePath)
	if err != nil {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	return rollout(ctx, o, app, true, func(ctx context.Context, s *session) (Message, error) {
		f, err := os.Open(bundlePath)
		if err != nil {
			return Message{}, fmt.Errorf("reading bundle: %w", err)
		}
		defer f.Close()
		if err := s.write(fmt.Sprintf("deploy %s %d", app, fi.Size()), f); err != nil {
			return Message{}, err
		}
		return s.next(ctx)
	})
}

// Rollback returns each host to what the last deploy --hosts replaced
// there, Parallel hosts at a time.
func Rollback(ctx context.Context, o Options, app string) ([]Outcome, error) {
	return rollout(ctx, o, app, false, func(ctx context.Context, s *session) (Message, error) {
		if err := s.write("rollback", nil); err != nil {
			return Message{}, err
		}
		return s.next(ctx)
	})
}

// rollout locks app on every host, then runs step on a batch of hosts at
// a time; the first failed host stops it after its batch. A deploy
// (start) first tells every locked host that this is now its last
// rollout, so a later rollback leaves the hosts it never reached alone.
func rollout(ctx context.Context, o Options, app string, start bool, step func(context.Context, *session) (Message, error)) ([]Outcome, error) {
	o.defaults()
	out := make([]Outcome, len(o.Hosts))
	for i, h := range o.Hosts {
		out[i].Host = h
	}
	p := &printer{w: o.Out}
	sessions, err := lockAll(ctx, o, app, out, p)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}()
	if err != nil {
		p.summary(out)
		return out, err
	}
	for _, s := range sessions {
		if !start {
			break
		}
		if err := s.write("start", nil); err != nil {
			return out, err
		}
	}
	failed := false
	for start := 0; start < len(o.Hosts) && !failed; start += o.Parallel {
		end := min(start+o.Parallel, len(o.Hosts))
		var wg sync.WaitGroup
		for i := start; i < end; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				m, err := step(ctx, sessions[i])
				oc := &out[i]
				oc.Reached, oc.Took = true, time.Since(t0)
				if err != nil {
					oc.Result, oc.Error, oc.Live, oc.Lost = ResultFailed, err.Error(), nil, true
					p.failed(oc, nil)
					return
				}
				oc.Result, oc.Error = m.Result, m.Error
				if m.Live != nil {
					oc.Live = m.Live
				}
				p.outcome(oc, m)
			}()
		}
		wg.Wait()
		for i := start; i < end; i++ {
			failed = failed || out[i].Result == ResultFailed
		}
	}
	p.summary(out)
	if failed {
		return out, ErrFailed
	}
	return out, nil
}

// lockAll opens a session to every host and takes app's lock there: all
// at once, or one by one in a fixed order with Wait (so two waiting
// rollouts cannot each hold a host the other waits for).
func lockAll(ctx context.Context, o Options, app string, out []Outcome, p *printer) ([]*session, error) {
	sessions := make([]*session, len(o.Hosts))
	holder := me()
	args := []string{"remote", "session", "--holder-user", holder.User, "--holder-machine", holder.Machine,
		"--holder-pid", fmt.Sprint(holder.PID), "--rollout", holder.Rollout}
	if o.Wait {
		args = append(args, "--wait")
	}
	if o.Timeout > 0 {
		args = append(args, "--timeout", o.Timeout.String())
	}
	args = append(args, app)
	lockOne := func(i int) error {
		s, err := open(ctx, o.SSH, o.Hosts[i], args...)
		if err != nil {
			return err
		}
		sessions[i] = s
		for {
			m, err := s.next(ctx)
			if err != nil {
				return err
			}
			switch m.Event {
			case EventLocked:
				out[i].Before, out[i].Live = m.Live, m.Live
				return nil
			case EventWaiting:
				p.line("%s: waiting for the rollout lock of %s, held by %s", o.Hosts[i], app, holderText(m.Holder))
			case EventBusy:
				return fmt.Errorf("another rollout of %s holds the lock: %s (use --wait to wait for it)", app, holderText(m.Holder))
			default:
				return fmt.Errorf("unexpected answer %q", m.Event)
			}
		}
	}
	errs := make([]error, len(o.Hosts))
	if o.Wait {
		order := make([]int, len(o.Hosts))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(o.Hosts[a], o.Hosts[b]) })
		for _, i := range order {
			if errs[i] = lockOne(i); errs[i] != nil {
				break
			}
		}
	} else {
		var wg sync.WaitGroup
		for i := range o.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = lockOne(i)
			}()
		}
		wg.Wait()
	}
	var bad []string
	for i, err := range errs {
		if err != nil {
			out[i].Result, out[i].Error, out[i].Lost = ResultFailed, err.Error(), true
			p.failed(&out[i], nil)
			bad = append(bad, o.Hosts[i])
		}
	}
	if len(bad) > 0 {
		return sessions, fmt.Errorf("%w: could not lock %s on %s; no host was changed", ErrFailed, app, strings.Join(bad, ", "))
	}
	return sessions, nil
}

func holderText(h *Holder) string {
	if h == nil {
		return "someone (who is being written down)"
	}
	return h.String()
}

// printer writes whole lines and blocks, one host at a time.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) outcome(oc *Outcome, m Message) {
	if oc.Result == ResultFailed {
		p.failed(oc, &m)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", oc.Host, oc.Result)
	if oc.Live != nil {
		fmt.Fprintf(&b, " version %s (bundle %.12s)", oc.Live.Version, oc.Live.Digest)
	}
	fmt.Fprintf(&b, " in %.1fs", oc.Took.Seconds())
	if oc.Error != "" {
		fmt.Fprintf(&b, ": %s", oc.Error)
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(&b, "\n  warning: %s", w)
	}
	p.line("%s", b.String())
}

func (p *printer) failed(oc *Outcome, m *Message) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: failed in %.1fs: %s", oc.Host, oc.Took.Seconds(), indentRest(oc.Error))
	if m != nil {
		if m.Hint != "" {
			fmt.Fprintf(&b, "\n  %s", m.Hint)
		}
		if len(m.Log) > 0 {
			fmt.Fprintf(&b, "\n  last log lines:\n    %s", strings.Join(m.Log, "\n    "))
		}
	}
	if oc.Live != nil {
		fmt.Fprintf(&b, "\n  version %s keeps serving there", oc.Live.Version)
	}
	p.line("%s", b.String())
}

func indentRest(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// summary says which hosts run which version now.
func (p *printer) summary(out []Outcome) {
	var b strings.Builder
	b.WriteString("versions now:")
	for _, oc := range out {
		v := "none live"
		if oc.Live != nil {
			v = fmt.Sprintf("version %s (bundle %.12s)", oc.Live.Version, oc.Live.Digest)
		} else if oc.Lost {
			v = "unknown"
		}
		note := ""
		switch {
		case oc.Result == ResultFailed:
			note = " (failed)"
		case !oc.Reached:
			note = " (not reached)"
		}
		fmt.Fprintf(&b, "\n  %s: %s%s", oc.Host, v, note)
	}
	p.line("%s", b.String())
}
