package app

import (
	"errors"
	"fmt"
)

// ErrHostTaken means a bundle claims a host another app serves.
var ErrHostTaken = errors.New("host already served by another app")

// reserveHosts claims hosts for name's new version; a host that another
// app serves or is deploying is refused with both names.
func (m *Manager) reserveHosts(name string, hosts []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	owner := map[string]string{}
	for app, v := range m.live {
		for _, h := range v.cfg.Hosts() {
			owner[h] = app
		}
	}
	for app, hs := range m.pending {
		for _, h := range hs {
			owner[h] = app
		}
	}
	var errs []error
	for _, h := range hosts {
		if o, ok := owner[h]; ok && o != name {
			errs = append(errs, fmt.Errorf("app %q: host %q: %w %q", name, h, ErrHostTaken, o))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.pending[name] = hosts
	return nil
}

func (m *Manager) unreserveHosts(name string) {
	m.mu.Lock()
	delete(m.pending, name)
	m.mu.Unlock()
}

func (m *Manager) liveVersion(name string) *version {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[name]
}

// swapLive makes v (nil: none) the live version and returns the old one.
func (m *Manager) swapLive(name string, v *version) *version {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.live[name]
	if v == nil {
		delete(m.live, name)
	} else {
		m.live[name] = v
	}
	delete(m.pending, name)
	return old
}

// touchLive records that the live version's bundle file was replaced by
// one with the same content.
func (m *Manager) touchLive(name string, f fileID) {
	m.mu.Lock()
	if v := m.live[name]; v != nil {
		v.file = f
	}
	m.mu.Unlock()
	m.saveState()
}
