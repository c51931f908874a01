package status

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"os"
	"time"
)

//go:embed page.html
var pageSource string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"short": func(s string) string { return s[:min(len(s), 12)] },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"dur":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"bytes": func(n *uint64) string { return Bytes(*n) },
	"cpu":   func(ns *uint64) string { return CPU(*ns) },
	"jobresult": func(r string) string {
		if r == "success" {
			return "live"
		}
		return "failed"
	},
	"result": func(r string) string {
		if r == "superseded" {
			return "deploying"
		}
		return r
	},
}).Parse(pageSource))

// page renders the status page on the server: no scripts, it refreshes
// itself every ten seconds.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	host, _ := os.Hostname()
	data := struct {
		Host      string
		Keter     Keter
		Apps      []App
		Reloads   uint64
		Certs     []Cert
		LogHidden string
		Storage   *CertStorage
	}{host, s.keter(), s.apps(r.Context(), 8), 0, s.certs(), logsHidden(r.Context()), s.certStorage()}
	if s.o.Reloads != nil {
		data.Reloads = s.o.Reloads()
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	buf.WriteTo(w)
}
