package nginx

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/atomicfile"
)

// Maintenance mode. nginx always carries one loopback server keter owns,
// the responder, on a fixed port from the port-manager ranges: it answers
// every request with 503, Retry-After and a page chosen by the request's
// host from files under Paths.MaintenanceDir. An app goes into
// maintenance by writing its page and pointing its webapps' front ports at
// the responder in the port map, the same atomic switch a deploy makes:
// no reload, and no connection a client made is touched. Its other
// stanzas (static files, redirects, reverse proxies) are rendered ahead
// with a gate: while the app's flag file exists (gateName), their
// requests go to the responder, so they switch without a reload too (at
// the cost of one stat per request). Without a port map every stanza is
// rendered to proxy to the responder: one reload. The pages, the flags
// and the map live outside keter, so all of it keeps working while keter
// is stopped.

// Maintenance is an app in maintenance as the front door sees it.
type Maintenance struct {
	// Message is shown on keter's page ("" for a default text); a
	// bundle's own page shows it where it says MessageMark.
	Message string
}

// RetryAfter is the Retry-After of a maintenance answer, in seconds.
const RetryAfter = 120

// MessageMark in a bundle's own maintenance page is replaced by the
// operator's message, HTML-escaped.
const MessageMark = "<!--keter:message-->"

// MaintenanceHost names the responder's server block; .invalid can never
// be a real site.
const MaintenanceHost = "keter-maintenance.invalid"

// defaultPage is what the responder serves for a host of no app in
// maintenance (a request that was on its way at a switch).
const defaultPage = "default.html"

// locMaintenance is the responder's internal location for its page.
const locMaintenance = "/.keter-internal/maintenance"

// maintenanceVar holds, per request, the page of the request's host.
const maintenanceVar = "$keter_maintenance_page"

// WithMaintenance runs the responder on loopback port (0: none). Its
// pages go to ROOT/etc/maintenance.
func WithMaintenance(port int) Option { return func(m *Manager) { m.maintenance = port } }

// pageName is the responder's file for app's hosts. App names are
// letters, digits, '.', '_' and '-', so they are file names as they are;
// the prefix keeps them apart from defaultPage.
func pageName(app string) string { return "app-" + app + ".html" }

// maintained reports whether a site of a is rendered to proxy to the
// responder: behind a port map a webapp is sent there by the map and
// other stanzas by their gate instead.
func (r *model) maintained(a App, st bundle.Stanza) bool {
	return a.Maintenance != nil && r.p.Maintenance != 0 && !r.p.Mapped
}

// gate is the flag file of a's maintenance for a stanza that is not a
// webapp, behind a port map; "" when the stanza has none.
func (r *model) gate(a App, st bundle.Stanza) string {
	if st.WebApp != nil || r.p.Maintenance == 0 || !r.p.Mapped {
		return ""
	}
	return filepath.Join(r.p.MaintenanceDir, gateName(a.Name))
}

// gateName is the flag file that puts app's gated stanzas in maintenance.
func gateName(app string) string { return "app-" + app + ".on" }

// locGate is the named location a gated stanza's requests go to while its
// flag file exists.
const locGate = "@keter_maintenance"

// gateServer renders what a gated site's server needs: its 503s go to
// the responder, which answers with the page of the request's host.
func (r *renderer) gateServer(w *writer, s *site) {
	if s.gate == "" {
		return
	}
	w.line("error_page", "503", "=", locGate)
	w.open("location", locGate)
	w.line("proxy_pass", "http://"+hostPort("127.0.0.1", r.p.Maintenance))
	w.line("proxy_set_header", "Host", "$host")
	w.close()
}

// gateCheck, first in each of a gated site's locations, answers 503 (to
// the responder, by gateServer's error_page) while the flag file exists.
func gateCheck(w *writer, s *site) {
	if s.gate == "" {
		return
	}
	w.open("if", "(-f", q(s.gate), ")")
	w.line("return", "503")
	w.close()
}

// checkMaintenance validates what the responder's server is made of.
func (r *model) checkMaintenance() error {
	if r.p.Maintenance == 0 {
		return nil
	}
	if r.p.Maintenance < 1 || r.p.Maintenance > 65535 {
		return fmt.Errorf("maintenance responder port %d: %w", r.p.Maintenance, ErrInvalid)
	}
	return checkPath("maintenance page folder", r.p.MaintenanceDir)
}

// maintenanceServer renders the responder and the map from every site's
// hosts to its app's page, so that turning maintenance on for any app
// later changes no config.
func (r *renderer) maintenanceServer(w *writer) {
	if r.p.Maintenance == 0 {
		return
	}
	w.open("map", "$host", maintenanceVar)
	w.line("default", q(strings.TrimSuffix(defaultPage, ".html")))
	for _, s := range r.sites {
		for _, h := range s.hosts {
			w.line(serverName(h), q(strings.TrimSuffix(pageName(s.app), ".html")))
		}
	}
	w.close()
	w.open("server")
	w.line("listen", hostPort("127.0.0.1", r.p.Maintenance))
	w.line("server_name", q(MaintenanceHost))
	// No kept connections: nginx would send a request on one after the
	// app's switch back, as long as it kept it.
	w.line("keepalive_timeout", "0")
	// The body of a request is read and dropped, whatever its size: the
	// site that proxied it here already applied its own limit.
	w.line("client_max_body_size", "0")
	w.line("error_page", "503", locMaintenance)
	w.open("location", "/")
	w.line("return", "503")
	w.close()
	w.open("location", "=", locMaintenance)
	w.line("internal")
	w.line("root", q(r.p.MaintenanceDir))
	w.open("types")
	w.close()
	w.line("default_type", q("text/html; charset=utf-8"))
	w.line("add_header", "Retry-After", strconv.Itoa(RetryAfter), "always")
	w.line("add_header", "Cache-Control", q("no-store"), "always")
	w.line("try_files", "/"+maintenanceVar+".html", "/"+defaultPage, "=503")
	w.close()
	w.close()
}

// maintenanceLocation sends a site in maintenance to the responder.
func (r *renderer) maintenanceLocation(w *writer) {
	w.open("location", "/")
	w.line("proxy_pass", "http://"+hostPort("127.0.0.1", r.p.Maintenance))
	w.line("proxy_set_header", "Host", "$host")
	w.close()
}

// mapMaintenance points the front ports of apps in maintenance at the
// responder in want, the port map Apply makes.
func mapMaintenance(want map[int]int, apps []App, responder int) {
	if responder == 0 {
		return
	}
	for _, a := range apps {
		if a.Maintenance == nil {
			continue
		}
		for _, fs := range a.Fronts {
			for _, f := range fs {
				want[f] = responder
			}
		}
	}
}

// Page is what the responder serves for a's hosts: the bundle's own
// bundle.MaintenancePage when it ships one (own is true), else keter's
// page with the message.
func Page(a App) (page []byte, own bool, err error) {
	msg := ""
	if a.Maintenance != nil {
		msg = a.Maintenance.Message
	}
	if a.Dir != "" {
		data, err := readOwnPage(filepath.Join(a.Dir, bundle.MaintenancePage))
		switch {
		case err == nil:
			return bytes.ReplaceAll(data, []byte(MessageMark), []byte(escapeMessage(msg))), true, nil
		case !errors.Is(err, os.ErrNotExist):
			return keterPage(msg), false, err
		}
	}
	return keterPage(msg), false, nil
}

// readOwnPage reads a bundle's page: a regular file of at most
// bundle.MaxMaintenancePage bytes.
func readOwnPage(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading %s: not a regular file", bundle.MaintenancePage)
	}
	data, err := io.ReadAll(io.LimitReader(f, bundle.MaxMaintenancePage+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", bundle.MaintenancePage, err)
	}
	if len(data) > bundle.MaxMaintenancePage {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", bundle.MaintenancePage, bundle.MaxMaintenancePage)
	}
	return data, nil
}

// escapeMessage makes an operator's text HTML, keeping its line breaks.
func escapeMessage(msg string) string {
	return strings.ReplaceAll(html.EscapeString(msg), "\n", "<br>\n")
}

// keterPage is keter's own maintenance page.
func keterPage(msg string) []byte {
	text := escapeMessage(msg)
	if strings.TrimSpace(msg) == "" {
		text = "This site is being worked on and will be back soon."
	}
	return []byte(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Down for maintenance</title>
<style>body { font: 17px/1.5 system-ui, sans-serif; max-width: 36em; margin: 15vh auto; padding: 0 1em; color: #222; } h1 { font-size: 1.5em; }</style>
</head>
<body>
<h1>Down for maintenance</h1>
<p>` + text + `</p>
</body>
</html>
`)
}

// writePages writes the page of every app in apps that is in
// maintenance, and the default page, before any host is sent to the
// responder: a page is always there before its host is. A bundle page keter cannot use is logged and replaced by
// keter's own: it must not fail a deploy.
func (m *Manager) writePages(apps []App) error {
	if m.paths.Maintenance == 0 {
		return nil
	}
	dir := m.paths.MaintenanceDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the maintenance page folder: %w", err)
	}
	pages := map[string][]byte{defaultPage: keterPage("")}
	for _, a := range apps {
		if a.Maintenance == nil {
			continue
		}
		page, _, err := Page(a)
		if err != nil {
			m.log.Warn("serving keter's maintenance page instead of the bundle's", "app", a.Name, "err", err)
		}
		pages[pageName(a.Name)] = page
	}
	for name, page := range pages {
		if err := writePage(filepath.Join(dir, name), page); err != nil {
			return fmt.Errorf("writing the maintenance page of %s: %w", strings.TrimSuffix(name, ".html"), err)
		}
	}
	return nil
}

// writeGates makes the flag file of each app in maintenance and removes
// every other, after the pages are written: a gated site is sent to the
// responder only once its page is there.
func (m *Manager) writeGates(apps []App) error {
	if m.paths.Maintenance == 0 || !m.paths.Mapped {
		return nil
	}
	dir := m.paths.MaintenanceDir
	on := map[string]bool{}
	var errs []error
	for _, a := range apps {
		if a.Maintenance == nil {
			continue
		}
		on[gateName(a.Name)] = true
		path := filepath.Join(dir, gateName(a.Name))
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if err := atomicfile.Write(path, nil, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("switching maintenance of %s on: %w", a.Name, err))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("reading the maintenance page folder: %w", err))...)
	}
	for _, e := range entries {
		if on[e.Name()] || !strings.HasPrefix(e.Name(), "app-") || !strings.HasSuffix(e.Name(), ".on") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("switching maintenance of %s off: %w", strings.TrimSuffix(strings.TrimPrefix(e.Name(), "app-"), ".on"), err))
		}
	}
	return errors.Join(errs...)
}

// cleanPages removes the pages of apps no longer deployed. An app out of
// maintenance keeps its page: nginx may send a request on a connection
// to the responder that was busy at the switch for keepalive_time more,
// and that request gets the app's page; the next switch on writes it anew.
func (m *Manager) cleanPages(apps []App) {
	if m.paths.Maintenance == 0 {
		return
	}
	keep := map[string]bool{defaultPage: true}
	for _, a := range apps {
		keep[pageName(a.Name)] = true
	}
	entries, err := os.ReadDir(m.paths.MaintenanceDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if keep[e.Name()] || !strings.HasPrefix(e.Name(), "app-") || !strings.HasSuffix(e.Name(), ".html") {
			continue
		}
		if err := os.Remove(filepath.Join(m.paths.MaintenanceDir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.log.Warn("removing a maintenance page", "file", e.Name(), "err", err)
		}
	}
}
