package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/keter-systemd/keter/unitgen"
)

// fakeUnits stands in for systemd at the D-Bus boundary: a started webapp
// unit is an in-process HTTP server on the unit's PORT that answers with
// the version; behaviour per app is set in failing.
type fakeUnits struct {
	mu      sync.Mutex
	running map[string]*fakeUnit
	started []string
	stopped []string
	failing map[string]string   // app → "start" | "never-ready" | "stranger" | "trap" | "release-fail" | "release-hang"
	runs    []unitgen.Unit      // every unit Run got
	journal map[string][]string // app → its last lines, when set
	subs    []chan unitgen.Status
	// gate, when set, holds each Start until it is closed; entered
	// hears of each Start it holds.
	gate    chan struct{}
	entered chan string
}

type fakeUnit struct {
	st   unitgen.Status
	srv  *http.Server
	hook []string // ExecStopPostEx's argv
	unit unitgen.Unit
}

func newFakeUnits() *fakeUnits {
	return &fakeUnits{running: map[string]*fakeUnit{}, failing: map[string]string{}, journal: map[string][]string{}}
}

func (f *fakeUnits) Start(ctx context.Context, u unitgen.Unit) error {
	f.mu.Lock()
	gate, entered := f.gate, f.entered
	f.mu.Unlock()
	if gate != nil {
		entered <- u.Name
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, u.Name)
	mode := f.failing[u.Meta.App]
	if mode == "start" {
		return errors.New("job failed: " + u.Name)
	}
	fu := &fakeUnit{st: unitgen.Status{Name: u.Name, Meta: u.Meta, ActiveState: "active", SubState: "running", MainPID: 1}, unit: u}
	for _, p := range u.Properties {
		if p.Name == "ExecStopPostEx" {
			v := reflect.ValueOf(p.Value.Value()).Index(0).FieldByName("Args")
			fu.hook = v.Interface().([]string)
		}
	}
	if mode == "stranger" {
		// The app exits at once while something else answers on its port.
		fu.st.ActiveState, fu.st.SubState = "activating", "auto-restart"
	}
	if mode == "trap" {
		// The app keeps dying of SIGTRAP at start, as V8 does under W^X.
		fu.st.ActiveState, fu.st.SubState, fu.st.NRestarts = "activating", "auto-restart", 2
		fu.st.ExecMainCode, fu.st.ExecMainStatus = unitgen.CodeKilled, 5
	}
	if port := envOf(u, "PORT"); port != "" && mode != "never-ready" && mode != "trap" {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			return err
		}
		version := u.Meta.Version
		fu.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, version)
		})}
		go fu.srv.Serve(l)
	}
	f.running[u.Name] = fu
	f.emitLocked(fu.st)
	return nil
}

// Run stands in for a oneshot release step: it ends at once with exit 0,
// with exit 3 under "release-fail", or runs until ctx ends (then stopped,
// as the real Run does) under "release-hang".
func (f *fakeUnits) Run(ctx context.Context, u unitgen.Unit) (unitgen.Status, error) {
	f.mu.Lock()
	f.started = append(f.started, u.Name)
	f.runs = append(f.runs, u)
	mode := f.failing[u.Meta.App]
	st := unitgen.Status{Name: u.Name, Meta: u.Meta, ActiveState: "inactive", SubState: "dead", Result: "success", ExecMainCode: unitgen.CodeExited}
	if mode == "release-hang" {
		f.running[u.Name] = &fakeUnit{st: unitgen.Status{Name: u.Name, Meta: u.Meta, ActiveState: "activating", SubState: "start"}}
	}
	f.mu.Unlock()
	switch mode {
	case "release-fail":
		st.ActiveState, st.SubState, st.Result, st.ExecMainStatus = "failed", "failed", "exit-code", 3
	case "release-hang":
		<-ctx.Done()
		f.Stop(context.WithoutCancel(ctx), u.Name)
		return st, ctx.Err()
	}
	return st, nil
}

func (f *fakeUnits) Listens(ctx context.Context, unit string, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fu := f.running[unit]
	if fu == nil || fu.srv == nil || f.failing[fu.st.Meta.App] == "foreign" {
		return errors.New("the port is held by a program outside the unit")
	}
	return nil
}

func (f *fakeUnits) Subscribe(ctx context.Context, prefix string) (<-chan unitgen.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan unitgen.Status, 1024)
	for _, fu := range f.running {
		ch <- fu.st
	}
	f.subs = append(f.subs, ch)
	return ch, nil
}

// emit sends s to every subscriber, as systemd's signals would.
func (f *fakeUnits) emit(s unitgen.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.emitLocked(s)
}

func (f *fakeUnits) emitLocked(s unitgen.Status) {
	for _, ch := range f.subs {
		select {
		case ch <- s:
		default:
		}
	}
}

func (f *fakeUnits) Stop(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, name)
	if fu := f.running[name]; fu != nil {
		if fu.srv != nil {
			fu.srv.Close()
		}
		delete(f.running, name)
		st := fu.st
		st.ActiveState, st.SubState = "inactive", "dead"
		f.emitLocked(st)
	}
	return nil
}

func (f *fakeUnits) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []unitgen.Status
	for n, fu := range f.running {
		if strings.HasPrefix(n, prefix) {
			out = append(out, fu.st)
		}
	}
	return out, nil
}

func (f *fakeUnits) Journal(ctx context.Context, unit string, n int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := unitgen.ParseUnitName(unit); ok && f.journal[m.App] != nil {
		lines := f.journal[m.App]
		return lines[max(0, len(lines)-n):], nil
	}
	return []string{"fake log line of " + unit}, nil
}

func (f *fakeUnits) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ns []string
	for n := range f.running {
		ns = append(ns, n)
	}
	return ns
}

func envOf(u unitgen.Unit, key string) string {
	for _, p := range u.Properties {
		if p.Name != "Environment" {
			continue
		}
		vs, _ := p.Value.Value().([]string)
		for _, kv := range vs {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
	}
	return ""
}

// fakeProxy records applies; fail makes the next Apply fail.
type fakeProxy struct {
	mu      sync.Mutex
	applies int
	last    []Live
	fail    error
	gate    chan struct{} // when set, Apply waits on it
}

func (p *fakeProxy) Apply(ctx context.Context, live []Live) error {
	if p.gate != nil {
		<-p.gate
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applies++
	if p.fail != nil {
		return p.fail
	}
	p.last = live
	return nil
}

// app is what the last apply got for name (zero if nothing).
func (p *fakeProxy) app(name string) Live {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.last {
		if l.Name == name {
			return l
		}
	}
	return Live{}
}

func (p *fakeProxy) serving() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]string{}
	for _, l := range p.last {
		m[l.Name] = l.Version
	}
	return m
}

// StartSleeper stands in for a socket with its services: the app starts
// at once (the fake has no sockets to wait on).
func (f *fakeUnits) StartSleeper(ctx context.Context, s unitgen.Sleeper) error {
	return f.Start(ctx, s.App)
}
