package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// writeAtomic writes data to path through a temp file in the same folder,
// fsync and rename, so readers see the old or the new file, never half.
func writeAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a fresh hidden file next to path and returns
// its name. The name never ends in ".conf", so a conf.d/*.conf glob in a
// system nginx.conf cannot pick it up.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return "", fmt.Errorf("creating temp file for %s: %w", path, err)
	}
	name := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(name)
		return "", fmt.Errorf("writing temp file for %s: %w", path, werr)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// buildConcat writes each planned chain bundle (certificate then chain)
// and reports whether any file's content changed. Bundles are 0600: nginx's
// master reads them as root.
func buildConcat(files map[string][]string) (changed bool, err error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var errs []error
	for _, p := range paths {
		var b bytes.Buffer
		var readErr error
		for _, src := range files[p] {
			data, err := os.ReadFile(src)
			if err != nil {
				readErr = fmt.Errorf("reading certificate: %w", err)
				break
			}
			b.Write(data)
			if len(data) > 0 && data[len(data)-1] != '\n' {
				b.WriteByte('\n')
			}
		}
		if readErr != nil {
			errs = append(errs, readErr)
			continue
		}
		old, err := os.ReadFile(p)
		if err == nil && bytes.Equal(old, b.Bytes()) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			errs = append(errs, fmt.Errorf("creating certificate folder: %w", err))
			continue
		}
		if err := writeAtomic(p, b.Bytes(), 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		changed = true
	}
	return changed, errors.Join(errs...)
}
