package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Errors with Keter's meanings, for errors.Is.
var (
	ErrNoConfig           = errors.New("no config/keter.yml or config/keter.yaml in the bundle")
	ErrExecutableNotFound = errors.New("executable not found")
	ErrFileNotExecutable  = errors.New("file is not executable")
	ErrNotBundleName      = errors.New("not a bundle file name")
)

// ConfigFiles are the config files Load looks for, in order (Keter's).
var ConfigFiles = []string{"config/keter.yml", "config/keter.yaml"}

// AppName returns the app name from a bundle path NAME.keter. The name
// must be made of [A-Za-z0-9._-] and not start with '.' or '-'; it ends up
// in unit names, folder names and logs.
func AppName(bundlePath string) (string, error) {
	base := filepath.Base(bundlePath)
	name, ok := strings.CutSuffix(base, ".keter")
	if !ok {
		return "", fmt.Errorf("reading app name of %s: %w: it must end in .keter", describe(base), ErrNotBundleName)
	}
	if err := ValidAppName(name); err != nil {
		return "", fmt.Errorf("reading app name of %s: %w", describe(base), err)
	}
	return name, nil
}

// Load reads and parses the config of an unpacked bundle folder, then
// checks its files: every exec exists and is executable, static roots are
// folders inside dir, relative certificate files exist.
func Load(dir string) (*AppConfig, error) {
	c, _, err := LoadWithWarnings(dir)
	return c, err
}

// LoadWithWarnings is Load that also returns the parser's warnings.
func LoadWithWarnings(dir string) (*AppConfig, []string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening bundle folder: %w", err)
	}
	defer root.Close()
	data, name, err := readConfig(root)
	if err != nil {
		return nil, nil, err
	}
	// Plain basic-auth passwords become hashes before anything else
	// reads the config, on disk too.
	hashed, err := hashPlainCreds(data, hashPassword)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	if hashed != nil {
		if err := rewriteConfig(root, name, hashed); err != nil {
			return nil, nil, err
		}
		data = hashed
	}
	c, warns, err := ParseWithWarnings(data)
	if err != nil {
		return nil, warns, fmt.Errorf("parsing %s: %w", name, err)
	}
	if err := checkFiles(root, c); err != nil {
		return nil, warns, fmt.Errorf("checking %s: %w", name, err)
	}
	return c, warns, nil
}

func readConfig(root *os.Root) ([]byte, string, error) {
	for _, name := range ConfigFiles {
		f, err := root.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, name, fmt.Errorf("opening %s: %w", name, err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
		if err != nil {
			return nil, name, fmt.Errorf("reading %s: %w", name, err)
		}
		return data, name, nil
	}
	return nil, "", fmt.Errorf("loading bundle config: %w (looked for %s)", ErrNoConfig, strings.Join(ConfigFiles, " and "))
}

// stat resolves p inside root (relative) or on the host (absolute).
func stat(root *os.Root, p string) (fs.FileInfo, error) {
	if filepath.IsAbs(p) {
		return os.Stat(p)
	}
	return root.Stat(p)
}

func checkExec(root *os.Root, key, p string) error {
	fi, err := stat(root, p)
	if err != nil {
		return fmt.Errorf("%s: %w: %s: %v", key, ErrExecutableNotFound, p, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w: %s is a %s, not a file", key, ErrFileNotExecutable, p, typeName(fi.Mode()))
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: %w: %s has mode %v (no exec bits; was the bundle made by a tar that drops them?)", key, ErrFileNotExecutable, p, fi.Mode().Perm())
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "special file"
	}
}

func checkFiles(root *os.Root, c *AppConfig) error {
	var errs []error
	checkSSL := func(key string, s SSL) {
		for _, f := range append([]string{s.Certificate, s.Key}, s.ChainCertificates...) {
			if f == "" || filepath.IsAbs(f) {
				continue // host files: nginx -t checks them
			}
			if _, err := root.Stat(f); err != nil {
				errs = append(errs, fmt.Errorf("%s.ssl: certificate file %s: %v", key, f, unwrapPath(err)))
			}
		}
	}
	for i, s := range c.Stanzas {
		key := fmt.Sprintf("stanzas[%d]", i)
		switch {
		case s.WebApp != nil:
			if err := checkExec(root, key+".exec", s.WebApp.Path); err != nil {
				errs = append(errs, err)
			}
			checkSSL(key, s.WebApp.SSL)
		case s.Background != nil:
			if err := checkExec(root, key+".exec", s.Background.Path); err != nil {
				errs = append(errs, err)
			}
		case s.Scheduled != nil:
			if err := checkExec(root, key+".exec", s.Scheduled.Path); err != nil {
				errs = append(errs, err)
			}
		case s.StaticFiles != nil:
			fi, err := root.Stat(s.StaticFiles.Root)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s.root: static files folder %s: %v", key, s.StaticFiles.Root, unwrapPath(err)))
			case !fi.IsDir():
				errs = append(errs, fmt.Errorf("%s.root: %s is not a folder", key, s.StaticFiles.Root))
			}
			checkSSL(key, s.StaticFiles.SSL)
		case s.Redirect != nil:
			checkSSL(key, s.Redirect.SSL)
		case s.ReverseProxy != nil:
			checkSSL(key, s.ReverseProxy.SSL)
		}
	}
	if c.Release != nil {
		if err := checkExec(root, "release.exec", c.Release.Exec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Check unpacks archive into a temporary folder, loads it, and removes the
// folder again (for `keter check`).
func Check(ctx context.Context, archive string) (*AppConfig, error) {
	c, _, err := CheckWithWarnings(ctx, archive)
	return c, err
}

// CheckWithWarnings is Check that also returns the parser's warnings.
func CheckWithWarnings(ctx context.Context, archive string) (*AppConfig, []string, error) {
	tmp, err := os.MkdirTemp("", "keter-check-")
	if err != nil {
		return nil, nil, fmt.Errorf("making temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	dest := filepath.Join(tmp, "bundle")
	if err := Unpack(ctx, archive, dest, DefaultLimits()); err != nil {
		return nil, nil, err
	}
	return LoadWithWarnings(dest)
}
