package postgres

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// FileName is the credentials file inside keter's etc folder, as in Keter.
const FileName = "postgres.yaml"

// Entry is one app's database in postgres.yaml, with Keter's keys.
type Entry struct {
	Name   string `yaml:"name"` // database
	User   string `yaml:"user"` // login role
	Pass   string `yaml:"pass"`
	Server string `yaml:"server"`
	Port   int    `yaml:"port"`
}

// Keter's defaults for entries written before server/port existed.
const (
	keterDefaultServer = "localhost"
	defaultPort        = 5432
)

func (e *Entry) applyDefaults() {
	if e.Server == "" {
		e.Server = keterDefaultServer
	}
	if e.Port == 0 {
		e.Port = defaultPort
	}
}

func (e Entry) validate() error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"name", e.Name}, {"user", e.User}, {"pass", e.Pass}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", f.key))
		}
		if strings.IndexByte(f.v, 0) >= 0 {
			errs = append(errs, fmt.Errorf("%s contains a NUL byte", f.key))
		}
	}
	if e.Port < 1 || e.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is out of range", e.Port))
	}
	return errors.Join(errs...)
}

// store is postgres.yaml inside dir.
type store struct{ dir string }

func (s store) path() string { return filepath.Join(s.dir, FileName) }

// lock takes an exclusive flock on the etc folder so that a separate
// `keter postgres drop` process and the daemon do not lose each other's
// writes; the returned func releases it.
func (s store) lock() (func(), error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.dir, err)
	}
	f, err := os.Open(s.dir)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", s.dir, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", s.dir, err)
	}
	return func() { f.Close() }, nil // closing releases the flock
}

// load reads every entry; a missing or empty file is an empty map.
func (s store) load() (map[string]Entry, error) {
	b, err := os.ReadFile(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return map[string]Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.path(), err)
	}
	return parse(b, s.path())
}

func parse(b []byte, name string) (map[string]Entry, error) {
	m := map[string]Entry{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	if m == nil { // a file holding only "null" or "{}"
		m = map[string]Entry{}
	}
	var errs []error
	for app, e := range m {
		e.applyDefaults()
		if err := e.validate(); err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", app, err))
		}
		m[app] = e
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	return m, nil
}

// save writes every entry atomically: a temp file in the same folder,
// mode 0600 from the start, fsync, rename, then fsync the folder so the
// rename itself survives a power cut.
func (s store) save(m map[string]Entry) error {
	b, err := yaml.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", s.path(), err)
	}
	if err := atomicfile.Write(s.path(), b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", s.path(), err)
	}
	return nil
}
