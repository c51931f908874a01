package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// authDir holds keter's basic-auth user files: root's, readable by the
// group of nginx's workers only (they read the file at each request).
func (m *Manager) authDir() string { return filepath.Join(m.paths.Prefix, "auth") }

// workerGID is the group of nginx's workers.
func (m *Manager) workerGID() (int, error) {
	name := m.paths.User
	if name == "" {
		name = workerUser()
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("looking up nginx's worker user %s: %w", name, err)
	}
	return strconv.Atoi(u.Gid)
}

// writeAuth writes each user file that changed, owner root, group the
// workers', mode 0640, before the config naming it is tested: a worker
// never finds it missing or unreadable.
func (m *Manager) writeAuth(files map[string][]byte) error {
	if len(files) == 0 {
		return nil
	}
	gid, err := m.workerGID()
	if err != nil {
		return err
	}
	dir := m.authDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating basic-auth folder: %w", err)
	}
	if err := errors.Join(os.Chown(dir, 0, gid), os.Chmod(dir, 0o750)); err != nil {
		return fmt.Errorf("creating basic-auth folder: %w", err)
	}
	var errs []error
	for _, p := range sortedKeys(files) {
		if filepath.Dir(p) != dir {
			errs = append(errs, fmt.Errorf("basic-auth file %s outside %s: %w", p, dir, ErrInvalid))
			continue
		}
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, files[p]) {
			if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() == 0o640 {
				continue
			}
		}
		tmp, err := atomicfile.WriteTemp(p, files[p], 0o640)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Chown(tmp, 0, gid); err != nil {
			os.Remove(tmp)
			errs = append(errs, fmt.Errorf("writing basic-auth file: %w", err))
			continue
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			errs = append(errs, fmt.Errorf("writing basic-auth file: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// cleanAuth removes keter's user files the loaded config no longer names.
func (m *Manager) cleanAuth(used map[string][]byte) {
	entries, err := os.ReadDir(m.authDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(m.authDir(), e.Name())
		if _, ok := used[p]; !ok && strings.HasSuffix(e.Name(), ".htpasswd") {
			if err := os.Remove(p); err != nil {
				m.log.Warn("removing an unused basic-auth file", "file", p, "err", err)
			}
		}
	}
}
