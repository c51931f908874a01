package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ErrNoPrevious means rollback has no kept bundle other than the live one.
var ErrNoPrevious = errors.New("no previous bundle kept")

// ErrUnknownApp means no app of that name is known.
var ErrUnknownApp = errors.New("no such app")

// Kept is one bundle kept for rollback.
type Kept struct {
	Path   string    `json:"path"`
	Digest string    `json:"digest"`
	At     time.Time `json:"at"` // when it went live
}

func (m *Manager) bundlesDir(name string) string {
	return filepath.Join(m.cfg.Etc(), "bundles", name)
}

// keepBundle copies the bundle of a version that just went live into
// ROOT/etc/bundles/NAME/ and keeps only the newest keep-bundles of them.
// Failures are logged: keeping is a convenience, the deploy succeeded.
func (m *Manager) keepBundle(v *version) {
	dir := m.bundlesDir(v.app)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		m.log.Error("keeping bundle for rollback", "app", v.app, "err", err)
		return
	}
	dst := filepath.Join(dir, fmt.Sprintf("%019d-%s.keter", time.Now().UnixNano(), v.digest))
	kept, _ := m.KeptBundles(v.app)
	// The same content kept before (a reboot's restore, a rollback) is
	// renamed as the newest rather than copied again.
	renamed := false
	for _, k := range kept {
		if k.Digest == v.digest && !renamed {
			renamed = os.Rename(k.Path, dst) == nil
		}
	}
	if !renamed {
		same, err := copyIfSame(v.bundle, v.file, dst)
		if err != nil {
			m.log.Error("keeping bundle for rollback", "app", v.app, "err", err)
			return
		}
		if !same {
			return // a newer bundle replaced the file meanwhile; it keeps itself
		}
	}
	kept, _ = m.KeptBundles(v.app)
	n := 0
	for _, k := range kept {
		switch {
		case k.Path == dst:
			n++
		case k.Digest == v.digest || n >= m.cfg.KeepBundles:
			os.Remove(k.Path)
		default:
			n++
		}
	}
}

// KeptBundles lists an app's kept bundles, newest first.
func (m *Manager) KeptBundles(name string) ([]Kept, error) {
	entries, err := os.ReadDir(m.bundlesDir(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing kept bundles of %s: %w", name, err)
	}
	var out []Kept
	for _, e := range entries {
		stamp, digest, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".keter"), "-")
		if !ok || e.Name()[0] == '.' || !strings.HasSuffix(e.Name(), ".keter") {
			continue
		}
		var ns int64
		if _, err := fmt.Sscanf(stamp, "%d", &ns); err != nil {
			continue
		}
		out = append(out, Kept{Path: filepath.Join(m.bundlesDir(name), e.Name()), Digest: digest, At: time.Unix(0, ns)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, nil
}

// Rollback puts the newest kept bundle that is not the live one back into
// the incoming folder as NAME.keter, so the usual deploy takes it live
// (and a restarted keter keeps it). It returns that bundle's digest;
// WaitDeploy tells the outcome.
func (m *Manager) Rollback(ctx context.Context, name string) (string, error) {
	return m.RollbackTo(ctx, name, "")
}

// RollbackTo is Rollback to the kept bundle with digest want (any kept
// one but the live one when want is empty): keter deploy --hosts records
// per host what a rollout replaced, and rollback --hosts brings that back.
func (m *Manager) RollbackTo(ctx context.Context, name, want string) (string, error) {
	kept, err := m.KeptBundles(name)
	if err != nil {
		return "", err
	}
	live := ""
	if v := m.liveVersion(name); v != nil {
		live = v.digest
	}
	if live == "" && len(kept) == 0 {
		return "", fmt.Errorf("rolling back %s: %w", name, ErrUnknownApp)
	}
	for _, k := range kept {
		if k.Digest == live || want != "" && k.Digest != want {
			continue
		}
		dst := filepath.Join(m.cfg.Incoming(), name+".keter")
		digest, err := CopyAtomic(k.Path, dst, 0o644)
		if err == nil && digest != k.Digest {
			// keepBundle trusts the file's identity, not a second hash.
			os.Remove(dst)
			err = fmt.Errorf("kept bundle %s has sha256 %.12s, not the %.12s it was kept as", k.Path, digest, k.Digest)
		}
		if err != nil {
			return "", fmt.Errorf("rolling back %s: %w", name, err)
		}
		m.log.Info("rolling back", "app", name, "digest", digest, "kept_at", k.At)
		return digest, nil
	}
	if want != "" {
		return "", fmt.Errorf("rolling back %s: %w: bundle %.12s is not kept (keep-bundles is %d) or is live", name, ErrNoPrevious, want, m.cfg.KeepBundles)
	}
	return "", fmt.Errorf("rolling back %s: %w (keep-bundles is %d)", name, ErrNoPrevious, m.cfg.KeepBundles)
}

// copyIfSame copies src to dst as CopyAtomic does when src is still the
// file id (its size, mtime and inode before and after the copy: what the
// deploy unpacked and hashed); it reports whether it was. Not hashing it
// again lets the kernel copy it (copy_file_range) and saves a deploy a
// read and a sha256 of its bundle; rollback checks the digest when it
// uses the copy.
func copyIfSame(src string, id fileID, dst string) (bool, error) {
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("copying bundle: %w", err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || identify(fi) != id {
		return false, err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return false, fmt.Errorf("copying bundle: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = io.Copy(f, in)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("copying bundle %s to %s: %w", src, dst, err)
	}
	if fi, err := in.Stat(); err != nil || identify(fi) != id {
		return false, err // written to while it was copied
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, fmt.Errorf("copying bundle %s to %s: %w", src, dst, err)
	}
	return true, nil
}

// CopyAtomic copies src to dst through a dot-named temporary file in
// dst's folder (the incoming watcher ignores dotfiles), synced and renamed
// into place. It returns the sha256 of what it wrote, as bundle.Digest.
func CopyAtomic(src, dst string, mode os.FileMode) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("copying bundle: %w", err)
	}
	defer in.Close()
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("copying bundle: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), in)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return "", fmt.Errorf("copying bundle %s to %s: %w", src, dst, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
