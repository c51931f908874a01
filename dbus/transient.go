package dbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// TransientDir is where systemd keeps the files of transient units.
const TransientDir = "/run/systemd/transient"

// exKeys are the unit file keys systemd 252 writes with an "Ex" suffix for
// commands set through the Ex D-Bus properties (flags such as "+" or "-").
// Its own parser does not know them: at the next daemon-reload the unit
// loses those commands (no ExecStart at all means "Refusing to start").
// The plain keys take the same value syntax, prefixes included.
var exKeys = []string{"ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost"}

// repairTransient renames the Ex keys in a transient unit file to the
// keys systemd reads back. It reports whether anything changed.
func repairTransient(data []byte) ([]byte, bool) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	changed := false
	for i, l := range lines {
		for _, k := range exKeys {
			if bytes.HasPrefix(l, []byte(k+"Ex=")) {
				lines[i] = append([]byte(k+"="), l[len(k)+3:]...)
				changed = true
				break
			}
		}
	}
	if !changed {
		return data, false
	}
	return bytes.Join(lines, nil), true
}

// repairFile repairs one transient unit file in place; a missing file is
// not an error (the unit is gone already).
func repairFile(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fixed, changed := repairTransient(data)
	if !changed {
		return false, nil
	}
	if err := atomicfile.Write(path, fixed, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// transientDir is TransientDir unless the client was told otherwise.
func (c *Client) transientDir() string {
	if c.TransientDir != "" {
		return c.TransientDir
	}
	return TransientDir
}

// RepairTransient repairs the transient unit files of the units whose
// names start with one of prefixes, and reloads systemd when one needed it,
// so units that a daemon-reload already broke (a package upgrade runs one)
// get their commands back. Units started by this client are repaired as
// they start; this is for those started before.
func (c *Client) RepairTransient(ctx context.Context, prefixes ...string) (int, error) {
	entries, err := os.ReadDir(c.transientDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading transient units: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range entries {
		if !hasAnyPrefix(e.Name(), prefixes) {
			continue
		}
		changed, err := repairFile(filepath.Join(c.transientDir(), e.Name()))
		if err != nil {
			errs = append(errs, err)
		}
		if changed {
			n++
		}
	}
	if n > 0 {
		if err := c.do(ctx, func(conn *sddbus.Conn) error { return conn.ReloadContext(ctx) }); err != nil {
			errs = append(errs, fmt.Errorf("reloading systemd: %w", err))
		}
	}
	return n, errors.Join(errs...)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
