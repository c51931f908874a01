package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keter-systemd/keter/status"
)

func cmdStatus(ctx context.Context, args []string) int {
	fs := newFlags("status", "[-c CONFIG] [--json] [APP]",
		"Shows every app (or one) with its state, live version, hosts, ports, units,\nlast deploy and last error, as the running keter knows them.")
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON (the status API's own format)")
	lines := fs.Int("n", 10, "recent log lines to show for one APP")
	hosts := addHostFlags(fs, false)
	pos, code, ok := parseArgs(fs, args, 0, 1)
	if !ok {
		return code
	}
	if hosts.given() {
		return statusHosts(ctx, hosts, strings.Join(pos, ""))
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	if len(pos) == 1 {
		a, err := c.App(ctx, pos[0], *lines)
		var ae *status.APIError
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
			return fail("no app %q", pos[0])
		}
		if err != nil {
			return fail("%v", err)
		}
		if *asJSON {
			return printJSON(a)
		}
		printApp(os.Stdout, a)
		return exitOK
	}
	k, err := c.Keter(ctx)
	if err != nil {
		return fail("%v", err)
	}
	apps, err := c.Apps(ctx, 0)
	if err != nil {
		return fail("%v", err)
	}
	certs, _ := c.Certs(ctx) // a keter without ACME lists none
	storage, _ := c.CertStorage(ctx)
	if *asJSON {
		return printJSON(struct {
			Keter       status.Keter        `json:"keter"`
			Apps        []status.App        `json:"apps"`
			Certs       []status.Cert       `json:"certs,omitempty"`
			CertStorage *status.CertStorage `json:"cert_storage,omitempty"`
		}{k, apps, certs, storage})
	}
	fmt.Printf("keter %s: %s, %d apps, root %s\n\n", k.Version, k.State, len(apps), k.Root)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "APP\tSTATE\tVERSION\tHOSTS\tUNITS\tMEMORY\tCPU\tTASKS\tLAST DEPLOY")
	for _, a := range apps {
		version, hosts := "-", "-"
		if a.Live != nil {
			version, hosts = a.Live.Version, strings.Join(a.Live.Hosts, ",")
		}
		active := 0
		for _, u := range a.Units {
			if u.Active == "active" {
				active++
			}
		}
		mem, cpu, tasks := appColumns(a)
		state := a.State
		if a.Maintenance != nil {
			state += " (maintenance)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d active\t%s\t%s\t%s\t%s\n", a.Name, state, version, hosts, active, len(a.Units), mem, cpu, tasks, lastDeploy(a))
	}
	w.Flush()
	if len(apps) > 0 {
		fmt.Println("\nMEMORY and TASKS: now; CPU: since keter started, across versions and restarts.")
	}
	for _, a := range apps {
		if a.LastHint != "" {
			fmt.Printf("\n%s: %s\n", a.Name, a.LastHint)
		}
	}
	printCerts(os.Stdout, certs)
	printCertStorage(os.Stdout, storage)
	return exitOK
}

func lastDeploy(a status.App) string {
	if a.LastResult == "" {
		return "-"
	}
	s := a.LastResult + " " + a.LastAt.Local().Format(time.DateTime)
	if a.LastError != "" {
		s += ": " + firstLine(a.LastError)
	}
	return s
}

// portList reads "web0 43126 (front 43125), web2 43127, 43129 (fronts
// 43128, 43130)", by stanza, one port per instance.
func portList(ports, fronts map[int][]int) string {
	if len(ports) == 0 {
		return "-"
	}
	join := func(ps []int) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = strconv.Itoa(p)
		}
		return strings.Join(s, ", ")
	}
	idx := slices.Sorted(maps.Keys(ports))
	parts := make([]string, len(idx))
	for i, s := range idx {
		parts[i] = fmt.Sprintf("web%d %s", s, join(ports[s]))
		switch f := fronts[s]; {
		case len(f) == 1:
			parts[i] += fmt.Sprintf(" (front %d)", f[0])
		case len(f) > 1:
			parts[i] += fmt.Sprintf(" (fronts %s)", join(f))
		}
	}
	return strings.Join(parts, ", ")
}

func printApp(w io.Writer, a status.App) {
	fmt.Fprintf(w, "app:          %s\nstate:        %s\n", a.Name, a.State)
	printMaintenance(w, a.Maintenance)
	printCanary(w, a.Canary)
	if v := a.Live; v != nil {
		fmt.Fprintf(w, "version:      %s (since %s)\ndigest:       %s\nhosts:        %s\nports:        %s\nfolder:       %s\n",
			v.Version, v.DeployedAt.Local().Format(time.DateTime), v.Digest, strings.Join(v.Hosts, ", "), portList(v.Ports, v.Fronts), v.Dir)
	}
	for _, d := range a.Draining {
		fmt.Fprintf(w, "draining:     %s on %s, until %s at the latest (stopped once no connection is left)\n",
			d.Version, portList(d.Ports, nil), d.Until.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "last deploy:  %s", lastDeploy(a))
	if a.Duration > 0 {
		fmt.Fprintf(w, " (took %s)", a.Duration.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	if a.LastError != "" {
		fmt.Fprintf(w, "last error:   %s\n", a.LastError)
	}
	if a.LastHint != "" {
		fmt.Fprintf(w, "hint:         %s\n", a.LastHint)
	}
	printLines(w, "last deploy's log", a.LastLog)
	if len(a.Certs) > 0 {
		fmt.Fprintln(w, "certificates:")
		for _, c := range a.Certs {
			fmt.Fprintf(w, "  %s  %s\n", c.Host, certLine(c))
		}
	}
	fmt.Fprintln(w, "units:")
	for _, u := range a.Units {
		live := ""
		switch {
		case u.Job != "" && a.Live != nil && u.Version == a.Live.Version:
			live = " (job " + u.Job + ")"
		case !u.Live:
			live = " (not live)"
		}
		fmt.Fprintf(w, "  %s  %s instance %d  %s/%s  %d restarts%s\n", u.Name, u.Stanza, u.Instance, u.Active, u.Sub, u.Restarts, live)
		if u.Usage != nil {
			fmt.Fprintf(w, "    this run: %s (since %s)\n", describe(u.Usage.Figures), u.Usage.Since.Local().Format(time.DateTime))
		}
	}
	printJobs(w, a.Jobs)
	if len(a.Usage) > 0 {
		fmt.Fprintln(w, "usage (memory and tasks now; CPU, IO and IP in total since):")
		for _, s := range a.Usage {
			fmt.Fprintf(w, "  %s  %s (since %s)\n", s.Stanza, describe(s.Figures), s.Since.Local().Format(time.DateTime))
		}
	}
	printLines(w, "recent log", a.Log)
}

func printLines(w io.Writer, title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func printJSON(v any) int {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail("%v", err)
	}
	return exitOK
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
