package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/atomicfile"
)

// A bundle's own error pages (bundle.ErrorPages). keter copies the live
// version's pages to Paths.ErrorDir/APP/CODE.html, a folder per app that
// outlives versions, so the config names the same files whatever the
// version and a deploy rewrites files, never the config: no reload. The
// config always looks there, pages or not. What a client gets when nginx
// cannot get an answer from the app, first that exists:
//  1. the maintenance responder's page, while the app is in maintenance
//     (its requests never reach the app's location, or come back as the
//     responder's own 503);
//  2. the bundle's page for the status;
//  3. the global proxy-exception-response-file;
//  4. nginx's built-in page (keter's copy of it, in the defaultPages
//     folder, so that one location serves every status).

// errorCodes are the statuses a bundle may have a page for, in order.
var errorCodes = func() []int {
	var cs []int
	for c := range bundle.ErrorPages {
		cs = append(cs, c)
	}
	sort.Ints(cs)
	return cs
}()

// errorDir is the folder of app's copied pages ("" when keter copies none).
func (r *model) errorDir(app string) string {
	if r.p.ErrorDir == "" {
		return ""
	}
	return filepath.Join(r.p.ErrorDir, app)
}

// checkErrorDir refuses an app whose page folder could not be written
// into the config safely.
func (r *model) checkErrorDir(a App) error {
	d := r.errorDir(a.Name)
	if d == "" {
		return nil
	}
	if err := bundle.ValidAppName(a.Name); err != nil {
		return fmt.Errorf("app name: %v: %w", err, ErrInvalid)
	}
	return checkPath("error page folder", d)
}

// defaultPages is the folder below Paths.ErrorDir of keter's stand-ins
// for nginx's built-in pages; no app name starts with a dot.
const defaultPages = ".keter-default"

// builtinPage is nginx's own page for code, as it writes it with
// server_tokens off: try_files takes only a literal status as its last
// resort, so one location serves every code only if a page always exists.
func builtinPage(code int) []byte {
	t := strconv.Itoa(code) + " " + statusText[code]
	return []byte("<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t +
		"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
}

// statusText is nginx's wording of the statuses a bundle may have a page for.
var statusText = map[int]string{502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}

// proxyErrors renders what a proxied site answers when nginx gets no
// answer from the app: the error_page chain above, in one location for
// every status (a location per status made nginx's parse of a thousand
// sites 30 % slower: BENCHMARKS.md).
func (r *renderer) proxyErrors(w *writer, s *site) {
	global := r.g.ProxyExceptionResponseFile
	if r.p.ErrorDir == "" {
		if global != "" {
			responseFile(w, "502", locProxyException, global)
		}
		return
	}
	codes := []string{}
	for _, c := range errorCodes {
		// A gated site's 503s are the maintenance gate's (gateServer).
		if c == 503 && s.gate != "" {
			continue
		}
		codes = append(codes, strconv.Itoa(c))
	}
	w.line(append(append([]string{"error_page"}, codes...), locErrorPage)...)
	w.open("location", "=", locErrorPage)
	w.line("internal")
	w.line("root", q(r.p.ErrorDir))
	w.open("types")
	w.close()
	w.line("default_type", q("text/html; charset=utf-8"))
	w.line("add_header", "Cache-Control", q("no-store"), "always")
	// $status is still the app's 502, 503 or 504 here.
	page := "/" + s.app + "/$status.html"
	if global != "" {
		w.line("try_files", page, locProxyException)
	} else {
		// The last resort only if keter could not write its pages.
		w.line("try_files", page, "/"+defaultPages+"/$status.html", "=502")
	}
	w.close()
	if global != "" {
		w.open("location", "=", locProxyException)
		w.line("internal")
		w.open("types")
		w.close()
		w.line("default_type", q("text/html; charset=utf-8"))
		w.line("alias", q(global))
		w.close()
	}
}

// locErrorPage is a site's internal location for its pages.
const locErrorPage = "/.keter-internal/error"

// writeErrorPages copies each app's pages from its live version to its
// folder and removes the pages its version does not ship, before the
// config or the map sends anything there. A page keter will not serve is
// logged and left out: it must not fail a deploy.
func (m *Manager) writeErrorPages(apps []App) error {
	if m.paths.ErrorDir == "" {
		return nil
	}
	if m.errorPagesOf == nil {
		m.errorPagesOf = map[string]string{}
	}
	var errs []error
	if err := writeDefaultPages(filepath.Join(m.paths.ErrorDir, defaultPages)); err != nil {
		errs = append(errs, err)
	}
	for _, a := range apps {
		if a.Dir == "" || bundle.ValidAppName(a.Name) != nil {
			continue
		}
		if m.errorPagesOf[a.Name] == a.Dir {
			continue
		}
		dir := filepath.Join(m.paths.ErrorDir, a.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("creating the error page folder of %s: %w", a.Name, err))
			continue
		}
		before := len(errs)
		for _, c := range errorCodes {
			dst := filepath.Join(dir, strconv.Itoa(c)+".html")
			page, err := readErrorPage(a.Dir, bundle.ErrorPages[c])
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					m.log.Warn("not serving the bundle's error page", "app", a.Name, "page", bundle.ErrorPages[c], "err", err)
				}
				if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("removing the error page %d of %s: %w", c, a.Name, err))
				}
				continue
			}
			if err := writePage(dst, page); err != nil {
				errs = append(errs, fmt.Errorf("writing the error page %d of %s: %w", c, a.Name, err))
			}
		}
		if len(errs) == before {
			m.errorPagesOf[a.Name] = a.Dir
		}
	}
	return errors.Join(errs...)
}

// writeDefaultPages writes nginx's pages where every site's error
// location falls back to, unless they are there already.
func writeDefaultPages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the default error page folder: %w", err)
	}
	for _, c := range errorCodes {
		if err := writePage(filepath.Join(dir, strconv.Itoa(c)+".html"), builtinPage(c)); err != nil {
			return fmt.Errorf("writing the default error page %d: %w", c, err)
		}
	}
	return nil
}

// writePage writes a page nginx serves unless it holds page already:
// world-readable, as nginx's workers read it like static files.
func writePage(path string, page []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, page) {
		return nil
	}
	return atomicfile.Write(path, page, 0o644)
}

// readErrorPage reads a bundle's page rel from its folder dir: a regular
// file reached through no symbolic link (a running app can write its own
// version folder, and a link could lead to any file keter can read), of
// at most bundle.MaxErrorPage bytes.
func readErrorPage(dir, rel string) ([]byte, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	// One component at a time, none of them a link (O_NOFOLLOW); rel is
	// keter's own constant, with no "..".
	parts := strings.Split(rel, "/")
	for i, part := range parts {
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= unix.O_DIRECTORY
		} else {
			flags |= unix.O_NONBLOCK | unix.O_NOCTTY // a FIFO must not block keter
		}
		next, err := unix.Openat(fd, part, flags, 0)
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.ELOOP) || (errors.Is(err, unix.ENOTDIR) && isLink(dir, parts[:i+1])):
			return nil, errors.New("reached through a symbolic link: ship the page itself")
		case err != nil:
			return nil, &os.PathError{Op: "open", Path: rel, Err: err}
		}
		fd = next
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > bundle.MaxErrorPage {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", fi.Size(), bundle.MaxErrorPage)
	}
	data, err := io.ReadAll(io.LimitReader(f, bundle.MaxErrorPage+1))
	if err != nil {
		return nil, err
	}
	if len(data) > bundle.MaxErrorPage {
		return nil, fmt.Errorf("more than the %d bytes allowed", bundle.MaxErrorPage)
	}
	return data, nil
}

// isLink reports whether dir/parts is a symbolic link (O_NOFOLLOW with
// O_DIRECTORY reports a linked folder as ENOTDIR, not ELOOP).
func isLink(dir string, parts []string) bool {
	fi, err := os.Lstat(filepath.Join(append([]string{dir}, parts...)...))
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// cleanErrorPages removes the page folders of apps no longer deployed.
func (m *Manager) cleanErrorPages(apps []App) {
	if m.paths.ErrorDir == "" {
		return
	}
	keep := map[string]bool{}
	for _, a := range apps {
		keep[a.Name] = true
	}
	for name := range m.errorPagesOf {
		if !keep[name] {
			delete(m.errorPagesOf, name)
		}
	}
	entries, err := os.ReadDir(m.paths.ErrorDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if keep[e.Name()] || !e.IsDir() || e.Name() == defaultPages {
			continue
		}
		if err := os.RemoveAll(filepath.Join(m.paths.ErrorDir, e.Name())); err != nil {
			m.log.Warn("removing the error pages of a removed app", "app", e.Name(), "err", err)
		}
	}
}
