package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

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
		if err := atomicfile.Write(p, b.Bytes(), 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		changed = true
	}
	return changed, errors.Join(errs...)
}
