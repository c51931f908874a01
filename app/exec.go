package app

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// OneOffs runs one-off commands (keter exec); the dbus package implements
// it.
type OneOffs interface {
	// RunOnce starts u, calls started once it runs and returns how it
	// ended; when ctx ends it stops u and still returns its end.
	RunOnce(ctx context.Context, u unitgen.Unit, started func()) (unitgen.Status, error)
	// Record writes a journal entry with the given fields.
	Record(msg string, fields map[string]string) error
	// Interrupt sends sig to every process of a running unit, as a
	// terminal sends Ctrl-C to its foreground processes.
	Interrupt(ctx context.Context, unit string, sig syscall.Signal) error
}

// ErrNoLive means the app has no live version to run a command in.
var ErrNoLive = errors.New("no live version")

// ErrNoProcess means the app runs no process whose sandbox a command
// could share (only static files, redirects, reverse proxies).
var ErrNoProcess = errors.New("no webapp or background stanza")

// ExecRequest is a one-off command for an app's live version.
type ExecRequest struct {
	App  string
	Argv []string
	// Stdio are the caller's stdin, stdout and stderr, as open file
	// descriptors; the command gets them as its own.
	Stdio []int
	// User says who asked, e.g. "1001/deploy", for the journal and log.
	User string
	// Signals are signals the caller sends to the running command (a
	// Ctrl-C is SIGINT); nil: none.
	Signals <-chan int
}

// Exec runs a command once in the app's live version: in its folder, as
// its user, in its sandbox and with its environment (those of its first
// webapp stanza, else its first background stanza; a webapp's PORT is
// that of its first instance, which is taken: the command can reach the
// running app there). It is a transient unit of its own (own limits), not
// one of the version's units, so the app is not touched. started is called
// with the unit's name once the command runs; when ctx ends the command is
// stopped. It returns how the command ended.
func (m *Manager) Exec(ctx context.Context, req ExecRequest, started func(unit string)) (unitgen.Status, error) {
	if m.oneOffs == nil {
		return unitgen.Status{}, errors.New("this keter cannot run one-off commands")
	}
	if err := bundle.ValidAppName(req.App); err != nil {
		return unitgen.Status{}, err
	}
	m.mu.Lock()
	v := m.live[req.App]
	_, known := m.status[req.App]
	if v != nil {
		v.execs++ // its folder stays until the command ends, live or not
	}
	m.mu.Unlock()
	if v != nil {
		defer func() {
			m.mu.Lock()
			v.execs--
			m.mu.Unlock()
		}()
	}
	switch {
	case v == nil && !known:
		return unitgen.Status{}, fmt.Errorf("%w: %q", ErrUnknownApp, req.App)
	case v == nil:
		return unitgen.Status{}, fmt.Errorf("app %q: %w to run a command in", req.App, ErrNoLive)
	}
	i, s, ok := processStanza(v.cfg)
	if !ok {
		return unitgen.Status{}, fmt.Errorf("app %q: %w to run a command like", req.App, ErrNoProcess)
	}
	pluginEnv, err := m.pluginEnv(ctx, v)
	if err != nil {
		return unitgen.Status{}, err
	}
	operator, err := m.OperatorEnv(req.App)
	if err != nil {
		return unitgen.Status{}, err
	}
	in := m.unitInput(v, i, s, pluginEnv, operator)
	if s.WebApp != nil && len(v.web[i]) > 0 {
		in.Port = v.web[i][0].port
	}
	base, err := unitgen.Build(in)
	if err != nil {
		return unitgen.Status{}, err
	}
	u, err := unitgen.OneOffUnit(base, unitgen.OneOff{Run: 1 + rand.IntN(999_999_999), Argv: req.Argv, User: req.User, Stdio: req.Stdio})
	if err != nil {
		return unitgen.Status{}, err
	}
	if u.EnvFile != "" {
		defer os.Remove(u.EnvFile)
	}
	defer os.Remove(u.Launcher)
	if err := writeUnitFiles(u); err != nil {
		return unitgen.Status{}, err
	}

	command := shellQuote(req.Argv)
	fields := map[string]string{
		"KETER_APP": v.app, "KETER_VERSION": v.id, "KETER_STANZA": unitgen.ExecStanza,
		"KETER_INSTANCE": strconv.Itoa(u.Meta.Instance), "KETER_EXEC_USER": req.User, "KETER_EXEC_UNIT": u.Name,
	}
	running := make(chan struct{})
	ended := make(chan struct{})
	defer close(ended)
	if req.Signals != nil {
		go m.forwardSignals(ctx, u.Name, req.Signals, running, ended)
	}
	st, err := m.oneOffs.RunOnce(ctx, u, func() {
		close(running)
		m.log.Info("exec started", "app", v.app, "version", v.id, "unit", u.Name, "user", req.User, "command", command)
		m.record(fmt.Sprintf("exec started by %s: %s", req.User, command), fields)
		if started != nil {
			started(u.Name)
		}
	})
	if err != nil {
		m.log.Warn("exec failed", "app", v.app, "version", v.id, "unit", u.Name, "user", req.User, "command", command, "err", err)
		return st, err
	}
	end := ExecEnd(st, ctx.Err() != nil)
	m.log.Info("exec ended", "app", v.app, "version", v.id, "unit", u.Name, "user", req.User, "command", command, "result", end)
	fields["KETER_EXEC_RESULT"] = end
	m.record(fmt.Sprintf("exec ended (%s), started by %s: %s", end, req.User, command), fields)
	return st, nil
}

// execsIn counts the keter exec commands running in v's folder.
func (m *Manager) execsIn(v *version) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return v.execs
}

// waitExecs returns once no keter exec command runs in a retired
// version's folder, which is then deleted; false when ctx ended first
// (keter stopping stops the commands).
func (m *Manager) waitExecs(ctx context.Context, v *version) bool {
	logged := false
	for m.execsIn(v) > 0 {
		if !logged {
			m.log.Info("a keter exec command still runs in the old version's folder; it is kept until the command ends", "app", v.app, "version", v.id)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(jobPoll):
		}
	}
	return true
}

// forwardSignals sends the caller's signals to the command's processes
// once it runs, until it ended.
func (m *Manager) forwardSignals(ctx context.Context, unit string, signals <-chan int, running, ended <-chan struct{}) {
	select {
	case <-running:
	case <-ended:
		return
	}
	for {
		select {
		case sig := <-signals:
			if err := m.oneOffs.Interrupt(ctx, unit, syscall.Signal(sig)); err != nil {
				m.log.Debug("forwarding a signal to a one-off command", "unit", unit, "signal", sig, "err", err)
			}
		case <-ended:
			return
		}
	}
}

// ExecEnd says how a one-off command ended: "exit status N", "killed by
// signal N" or, when stopped is set (the caller asked), "stopped".
func ExecEnd(st unitgen.Status, stopped bool) string {
	switch {
	case st.ExecMainCode == unitgen.CodeKilled || st.ExecMainCode == unitgen.CodeDumped:
		if stopped {
			return "stopped"
		}
		return "killed by signal " + strconv.Itoa(int(st.ExecMainStatus))
	case st.ExecMainCode == unitgen.CodeExited:
		return "exit status " + strconv.Itoa(int(st.ExecMainStatus))
	case stopped:
		return "stopped"
	}
	return "exit status 0" // collected as it ended well
}

func (m *Manager) record(msg string, fields map[string]string) {
	if err := m.oneOffs.Record(msg, fields); err != nil {
		m.log.Warn("writing an exec record to the journal", "err", err)
	}
}

// processStanza is the stanza a command runs like: the first webapp, else
// the first background stanza.
func processStanza(cfg *bundle.AppConfig) (int, bundle.Stanza, bool) {
	for _, t := range []bundle.StanzaType{bundle.TypeWebApp, bundle.TypeBackground} {
		for i, s := range cfg.Stanzas {
			if s.Type == t && (s.WebApp != nil || s.Background != nil) {
				return i, s, true
			}
		}
	}
	return 0, bundle.Stanza{}, false
}

// pluginEnv is the plugin variables v's units got: the postgres plugin
// finds the app's database again (it creates nothing that exists).
func (m *Manager) pluginEnv(ctx context.Context, v *version) (map[string]string, error) {
	pg := v.cfg.Plugins.Postgres
	if pg == nil {
		return nil, nil
	}
	if m.dbs == nil {
		return nil, errors.New("the app uses the postgres plugin, but keter has no postgres connection")
	}
	return m.dbs.Ensure(ctx, v.app, pg)
}

// shellQuote writes argv as a shell would read it back, for the log.
func shellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=,:@%", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
