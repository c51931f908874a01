package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
	pos, code, ok := parseArgs(fs, args, 0, 1)
	if !ok {
		return code
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
	if *asJSON {
		return printJSON(struct {
			Keter status.Keter `json:"keter"`
			Apps  []status.App `json:"apps"`
		}{k, apps})
	}
	fmt.Printf("keter %s: %s, %d apps, root %s\n\n", k.Version, k.State, len(apps), k.Root)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "APP\tSTATE\tVERSION\tHOSTS\tUNITS\tLAST DEPLOY")
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d active\t%s\n", a.Name, a.State, version, hosts, active, len(a.Units), lastDeploy(a))
	}
	w.Flush()
	for _, a := range apps {
		if a.LastHint != "" {
			fmt.Printf("\n%s: %s\n", a.Name, a.LastHint)
		}
	}
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

func printApp(w io.Writer, a status.App) {
	fmt.Fprintf(w, "app:          %s\nstate:        %s\n", a.Name, a.State)
	if v := a.Live; v != nil {
		fmt.Fprintf(w, "version:      %s (since %s)\ndigest:       %s\nhosts:        %s\nports:        %v\nfolder:       %s\n",
			v.Version, v.DeployedAt.Local().Format(time.DateTime), v.Digest, strings.Join(v.Hosts, ", "), v.Ports, v.Dir)
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
	fmt.Fprintln(w, "units:")
	for _, u := range a.Units {
		live := ""
		if !u.Live {
			live = " (not live)"
		}
		fmt.Fprintf(w, "  %s  %s/%s  %d restarts%s\n", u.Name, u.Active, u.Sub, u.Restarts, live)
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
