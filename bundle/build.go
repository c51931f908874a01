package bundle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Compression is how Build compresses the tarball.
type Compression int

const (
	Gzip Compression = iota // what Keter's bundles are
	Zstd                    // unpacks about four times faster (keter only)
)

// Build writes the bundle NAME.keter at out from the folder dir, which
// holds config/keter.yml or config/keter.yaml. The folder is validated
// with Load first. Entries are written in lexical order with owner and
// group cleared; modes and modification times are kept. Symlinks are kept
// when Unpack would accept them; other special files are refused. out is
// written to a temporary file in its folder, synced and renamed.
func Build(dir, out string) error { return BuildWith(dir, out, Gzip) }

// BuildWith is Build with the tarball compressed as c.
func BuildWith(dir, out string, c Compression) error {
	if _, err := AppName(out); err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	if _, err := Load(dir); err != nil {
		return fmt.Errorf("building bundle from %s: %w", dir, err)
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(absOut), ".keter-build-*")
	if err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeBundle(dir, tmp, c, absOut, tmp.Name()); err != nil {
		return fmt.Errorf("building bundle from %s: %w", dir, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	if err := os.Rename(tmp.Name(), absOut); err != nil {
		return fmt.Errorf("building bundle: %w", err)
	}
	return nil
}

func writeBundle(dir string, w io.Writer, c Compression, skip ...string) error {
	bw := bufio.NewWriterSize(w, ioBuf)
	var zw io.WriteCloser = gzip.NewWriter(bw)
	if c == Zstd {
		// One goroutine: the same folder gives the same bytes. The window
		// stays within what Unpack accepts (maxZstdWindow).
		z, err := zstd.NewWriter(bw, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
		if err != nil {
			return err
		}
		zw = z
	}
	tw := tar.NewWriter(zw)
	buf := make([]byte, ioBuf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if abs, _ := filepath.Abs(p); contains(skip, abs) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
			if err := checkLinkTarget(rel, link); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		default:
			return fmt.Errorf("%s: %w: %v", rel, ErrUnsupported, fi.Mode().Type())
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.Mode &= 0o777
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(tw, f, buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// checkLinkTarget applies Unpack's symlink rule at build time.
func checkLinkTarget(name, t string) error {
	if t == "" || strings.HasPrefix(t, "/") {
		return fmt.Errorf("%w: symlink to %s (must be relative, inside the bundle)", ErrUnsafeEntry, describe(t))
	}
	up, down := 0, false
	for _, c := range strings.Split(t, "/") {
		switch c {
		case "", ".":
		case "..":
			if down {
				return fmt.Errorf("%w: symlink target %s has '..' after a name", ErrUnsafeEntry, describe(t))
			}
			up++
		default:
			down = true
		}
	}
	if up > strings.Count(name, "/") {
		return fmt.Errorf("%w: symlink target %s points outside the bundle", ErrUnsafeEntry, describe(t))
	}
	return nil
}
