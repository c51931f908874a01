package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// OwnFilePrefix starts the names of the files keter itself writes at the
// top of a version folder after unpacking it (each unit's launcher), which
// Manifest leaves out: keter writes them again at every start.
const OwnFilePrefix = ".keter-"

// Manifest hashes an unpacked folder as it is on disk: every entry's
// path, kind and permission bits, each file's content and each link's
// target, in lexical order. Owners and times are left out (keter gives a
// version folder to its app's user before each start), and so are
// keter's own files at its top (OwnFilePrefix). The same folder gives the
// same hex sha256; any file added, removed, changed or made executable
// gives another.
func Manifest(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if filepath.Dir(rel) == "." && strings.HasPrefix(rel, OwnFilePrefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		switch t := info.Mode().Type(); {
		case t == 0:
			fmt.Fprintf(h, "f %q %o %d\n", rel, perm, info.Size())
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			if n != info.Size() {
				return fmt.Errorf("%s changed while it was read", rel)
			}
		case t == fs.ModeDir:
			fmt.Fprintf(h, "d %q %o\n", rel, perm)
		case t == fs.ModeSymlink:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %q %q\n", rel, target)
		default:
			fmt.Fprintf(h, "? %q %v\n", rel, t)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing unpacked folder %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
