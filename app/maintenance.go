package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/atomicfile"
)

// Maintenance is one app's maintenance switch: while it is on, the proxy
// answers every request for the app's hosts with a 503 page and the
// app's units keep running. It is kept in ROOT/etc/maintenance.json, so
// it survives keter restarts and redeploys.
type Maintenance struct {
	Since   time.Time `json:"since"`
	Message string    `json:"message,omitempty"`
}

// MaintenanceStatus is an app's maintenance as keter status shows it.
type MaintenanceStatus struct {
	Maintenance
	// OwnPage: the live version ships bundle.MaintenancePage, which is
	// served instead of keter's page.
	OwnPage bool `json:"own_page"`
}

// MaxMaintenanceMessage bounds the operator's message, in bytes.
const MaxMaintenanceMessage = 2000

// ErrNoMaintenance means keter runs without a maintenance responder.
var ErrNoMaintenance = errors.New("keter has no port for its maintenance responder (see its log at start)")

// ErrInvalidMessage means a maintenance message keter refuses.
var ErrInvalidMessage = errors.New("invalid maintenance message")

// maintenanceFile is ROOT/etc/maintenance.json.
type maintenanceFile struct {
	// Port is the maintenance responder's, fixed once taken.
	Port int                    `json:"port"`
	Apps map[string]Maintenance `json:"apps"`
}

// maintenance is the Manager's part for maintenance mode.
type maintenance struct {
	port int        // the responder's; 0: maintenance is unavailable
	op   sync.Mutex // one switch at a time
	apps map[string]Maintenance
}

func maintenancePath(cfg *config.Config) string {
	return filepath.Join(cfg.Etc(), "maintenance.json")
}

func loadMaintenance(path string) (maintenanceFile, error) {
	f := maintenanceFile{Apps: map[string]Maintenance{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("reading maintenance state: %w", err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("parsing maintenance state %s: %w (fix or delete it)", path, err)
	}
	if f.Apps == nil {
		f.Apps = map[string]Maintenance{}
	}
	return f, nil
}

func saveMaintenance(path string, f maintenanceFile) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("saving maintenance state: %w", err)
	}
	return nil
}

// MaintenancePort is the loopback port of the proxy's maintenance
// responder: the one recorded in ROOT/etc/maintenance.json while it lies
// in the port-manager ranges, else the first free port of the ranges that
// no app in state.json holds, recorded there. It stays fixed, so that a
// port map pointing fronts at it stays right across restarts, with keter
// stopped too. Call it before New; pass the port in Options.
func MaintenancePort(cfg *config.Config) (int, error) {
	path := maintenancePath(cfg)
	f, err := loadMaintenance(path)
	if err != nil {
		return 0, err
	}
	held := map[int]bool{}
	// An unreadable state only means apps are deployed again.
	st, _ := loadState(filepath.Join(cfg.Etc(), "state.json"))
	for _, rec := range st.Apps {
		for _, ps := range rec.Ports {
			for _, p := range ps {
				held[p] = true
			}
		}
		for _, ps := range rec.Fronts {
			for _, p := range ps {
				held[p] = true
			}
		}
		for _, ps := range rec.CanaryFronts {
			for _, p := range ps {
				held[p] = true
			}
		}
	}
	pool := newPorts(cfg.PortManager.Ranges)
	if f.Port != 0 && !held[f.Port] {
		for _, p := range pool.list {
			if p == f.Port {
				return p, nil
			}
		}
	}
	for _, p := range pool.list {
		if held[p] || !pool.probes(p) {
			continue
		}
		f.Port = p
		if err := os.MkdirAll(cfg.Etc(), 0o711); err != nil {
			return 0, fmt.Errorf("recording the maintenance port: %w", err)
		}
		if err := saveMaintenance(path, f); err != nil {
			return 0, err
		}
		return p, nil
	}
	return 0, fmt.Errorf("taking a port for the maintenance responder: %w", ErrNoPorts)
}

// loadMaintenanceState reads which apps are in maintenance. An app whose
// bundle is gone is forgotten: keter removes it.
func (m *Manager) loadMaintenanceState() error {
	f, err := loadMaintenance(maintenancePath(m.cfg))
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, rec := range f.Apps {
		if _, err := os.Stat(filepath.Join(m.cfg.Incoming(), name+".keter")); err != nil {
			m.log.Info("forgetting maintenance of an app whose bundle is gone", "app", name)
			continue
		}
		m.maint.apps[name] = rec
	}
	return nil
}

// saveMaintenanceLocked writes the maintenance state; m.mu is held.
func (m *Manager) saveMaintenanceLocked() error {
	return saveMaintenance(maintenancePath(m.cfg), maintenanceFile{Port: m.maint.port, Apps: m.maint.apps})
}

// maintenanceOf is app's maintenance for the proxy; m.mu is held.
func (m *Manager) maintenanceOf(name string) *Maintenance {
	rec, ok := m.maint.apps[name]
	if !ok {
		return nil
	}
	return &rec
}

// maintenanceStatus is app's maintenance for the status; m.mu is held.
func (m *Manager) maintenanceStatus(name string) *MaintenanceStatus {
	rec, ok := m.maint.apps[name]
	if !ok {
		return nil
	}
	s := &MaintenanceStatus{Maintenance: rec}
	if v := m.live[name]; v != nil {
		if fi, err := os.Stat(filepath.Join(v.dir, bundle.MaintenancePage)); err == nil && fi.Mode().IsRegular() {
			s.OwnPage = true
		}
	}
	return s
}

// SetMaintenance turns app name's maintenance on (with message, which
// replaces a previous one) or off, and returns once the proxy serves it
// to every new request. With on it returns once no new request can reach
// the app: the proxy may still send one on a connection it kept from
// before the switch until its bound (MinDrain) has passed; an answer in
// flight (a stream, a WebSocket) runs on. The state is saved
// before the proxy is switched, as a deploy's is; if the switch fails the
// previous state is put back.
func (m *Manager) SetMaintenance(ctx context.Context, name string, on bool, message string) error {
	if m.maint.port == 0 {
		return ErrNoMaintenance
	}
	if err := checkMessage(message); err != nil {
		return err
	}
	m.maint.op.Lock()
	defer m.maint.op.Unlock()
	m.mu.Lock()
	_, known := m.status[name]
	prev, was := m.maint.apps[name]
	if !known && m.live[name] == nil && !was {
		m.mu.Unlock()
		return fmt.Errorf("maintenance of %q: %w", name, ErrUnknownApp)
	}
	if on {
		rec := Maintenance{Since: time.Now().UTC(), Message: message}
		if was {
			rec.Since = prev.Since
		}
		m.maint.apps[name] = rec
	} else {
		delete(m.maint.apps, name)
	}
	err := m.saveMaintenanceLocked()
	m.mu.Unlock()
	if err == nil {
		err = m.sync.Sync(ctx)
	}
	if err != nil {
		m.mu.Lock()
		if was {
			m.maint.apps[name] = prev
		} else {
			delete(m.maint.apps, name)
		}
		serr := m.saveMaintenanceLocked()
		m.mu.Unlock()
		if serr != nil {
			m.log.Error("restoring maintenance state", "app", name, "err", serr)
		} else if ctx.Err() == nil {
			if rerr := m.sync.Sync(ctx); rerr != nil {
				m.log.Error("restoring nginx after a failed maintenance switch", "app", name, "err", rerr)
			}
		}
		return fmt.Errorf("switching maintenance of %q %s: %w", name, onOff(on), err)
	}
	if on && !was {
		select {
		case <-time.After(m.minDrain):
		case <-ctx.Done():
		}
	}
	if on {
		m.log.Info("maintenance on: the app's hosts answer 503", "app", name, "message", message)
	} else if was {
		m.log.Info("maintenance off: the app serves again", "app", name)
	}
	return nil
}

// dropMaintenance ends a removed app's maintenance.
func (m *Manager) dropMaintenance(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.maint.apps[name]; !ok {
		return
	}
	delete(m.maint.apps, name)
	if err := m.saveMaintenanceLocked(); err != nil {
		m.log.Error("saving maintenance state", "app", name, "err", err)
	}
	m.log.Info("maintenance ended: the app was removed", "app", name)
}

func checkMessage(msg string) error {
	switch {
	case len(msg) > MaxMaintenanceMessage:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidMessage, MaxMaintenanceMessage)
	case !utf8.ValidString(msg):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidMessage)
	case strings.ContainsFunc(msg, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' || r == 0x7f }):
		return fmt.Errorf("%w: control characters other than newline and tab", ErrInvalidMessage)
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
