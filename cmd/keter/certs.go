package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keter-systemd/keter/status"
)

// printCerts is keter status's table of ACME certificates.
func printCerts(out io.Writer, certs []status.Cert) {
	if len(certs) == 0 {
		return
	}
	fmt.Fprintln(out, "\ncertificates (ACME):")
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tSTATE\tISSUER\tEXPIRES\tLAST ERROR")
	for _, c := range certs {
		issuer, expires, last := "-", "-", "-"
		if c.Issuer != "" {
			issuer = c.Issuer
		}
		if !c.NotAfter.IsZero() {
			expires = c.NotAfter.Local().Format(time.DateTime)
		}
		switch {
		case c.LastError != "":
			last = c.LastErrorAt.Local().Format(time.DateTime) + ": " + firstLine(c.LastError)
		case c.Skipped != "":
			last = "skipped: " + c.Skipped
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Host, c.State, issuer, expires, last)
	}
	w.Flush()
}

// certLine is one certificate in keter status APP.
func certLine(c status.Cert) string {
	s := c.State
	if c.Issuer != "" {
		s += ", " + c.Issuer
	}
	if !c.NotAfter.IsZero() {
		s += ", expires " + c.NotAfter.Local().Format(time.DateTime)
	}
	if c.Skipped != "" {
		s += " (" + c.Skipped + ")"
	}
	if c.LastError != "" {
		s += "\n    last error " + c.LastErrorAt.Local().Format(time.DateTime) + ": " + c.LastError
	}
	return s
}

// printCertStorage is keter status's line on a shared ACME storage.
func printCertStorage(out io.Writer, s *status.CertStorage) {
	if s == nil || !s.Shared {
		return
	}
	if s.Reachable {
		fmt.Fprintf(out, "\ncertificate storage (shared): %s, %s: reachable\n", s.Kind, s.Where)
		return
	}
	since := ""
	if !s.Since.IsZero() {
		since = " since " + s.Since.Local().Format(time.DateTime)
	}
	fmt.Fprintf(out, "\ncertificate storage (shared): %s, %s: UNREACHABLE%s; hosts keep serving the certificates they have\n  %s\n",
		s.Kind, s.Where, since, strings.ReplaceAll(s.Error, "\n", "\n  "))
}
