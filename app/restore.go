package app

import (
	"os"
	"strings"

	"github.com/keter-systemd/keter/bundle"
)

// After a host reboot no app unit runs, so reconcile adopts nothing and
// every app is deployed again from its bundle. A version folder that is
// still as keter unpacked it (its manifest hash, recorded at unpack time,
// matches) is started again as it is: the bundle is not unpacked again.

// keepForRestore keeps the folder of a live version reconcile could not
// adopt, for the deploy of its bundle that follows, when it recorded a
// manifest and its bundle file in incoming/ is the same file.
func (m *Manager) keepForRestore(name string, rec liveRecord) bool {
	if rec.Manifest == "" || rec.Dir == "" {
		return false
	}
	fi, err := os.Stat(rec.Bundle)
	if err != nil || identify(fi) != rec.File {
		return false
	}
	if fi, err := os.Stat(rec.Dir); err != nil || !fi.IsDir() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.restore == nil {
		m.restore = map[string]liveRecord{}
	}
	m.restore[name] = rec
	return true
}

// restoreDir gives v the kept folder of its app when src is the bundle
// file it was unpacked from and the folder's manifest still matches; it
// reports whether it did. A kept folder that does not serve is deleted.
func (m *Manager) restoreDir(v *version, src string) bool {
	m.mu.Lock()
	rec, ok := m.restore[v.app]
	delete(m.restore, v.app)
	m.mu.Unlock()
	if !ok {
		return false
	}
	fi, err := os.Stat(src)
	switch {
	case err != nil || identify(fi) != rec.File:
	case !strings.HasPrefix(rec.Manifest, bundle.ManifestVersion):
		m.log.Info("version folder hashed by an older keter: unpacking its bundle again", "app", v.app, "dir", rec.Dir)
	default:
		got, err := bundle.Manifest(rec.Dir)
		if err == nil && got == rec.Manifest {
			v.dir, v.digest, v.file, v.manifest = rec.Dir, rec.Digest, rec.File, rec.Manifest
			m.log.Info("version folder intact: starting it without unpacking", "app", v.app, "dir", rec.Dir)
			return true
		}
		m.log.Warn("version folder changed since it was unpacked: unpacking its bundle again", "app", v.app, "dir", rec.Dir, "err", err)
	}
	if err := os.RemoveAll(rec.Dir); err != nil {
		m.log.Error("deleting version folder", "app", v.app, "dir", rec.Dir, "err", err)
	}
	return false
}

// restoreDirs are the kept folders, which reconcile must not delete.
func (m *Manager) restoreDirs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, rec := range m.restore {
		out = append(out, rec.Dir)
	}
	return out
}
