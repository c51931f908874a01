package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/bundle"
)

func cmdLogs(ctx context.Context, args []string) int {
	fs := newFlags("logs", "[-c CONFIG] [-f] [-n N] [-o FORMAT] [--since WHEN] APP",
		"Shows what APP printed, every version and stanza together: journald keeps\nit with KETER_APP=APP on each line (journalctl KETER_APP=APP underneath).\nReading the journal needs root or the systemd-journal group.")
	// Accepted as every command accepts it; the journal is the host's.
	configFlag(fs)
	follow := fs.Bool("f", false, "follow: keep printing new lines")
	lines := fs.Int("n", 0, "show only the last N lines (0: all, or 10 with -f)")
	output := fs.String("o", "short-iso", "journalctl output format (cat, short-iso, json, ...)")
	since := fs.String("since", "", "only lines from this long ago (a Go duration: 10m, 1h30m) or from a time in journalctl's syntax (\"2026-12-01 10:00\", yesterday, -2h)")
	pos, code, ok := parseArgs(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := bundle.ValidAppName(pos[0]); err != nil {
		return fail("%v", err)
	}
	jargs := []string{"KETER_APP=" + pos[0], "--no-pager", "-o", *output}
	if *follow {
		jargs = append(jargs, "-f")
	}
	if *since != "" {
		s, err := sinceArg(*since, time.Now())
		if err != nil {
			return usageError(fs, err.Error())
		}
		jargs = append(jargs, "--since="+s)
	}
	if *lines > 0 {
		jargs = append(jargs, "-n", strconv.Itoa(*lines))
	}
	cmd := exec.Command("journalctl", jargs...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil, ctx.Err() != nil: // Ctrl-C ends a follow: not a failure
		return exitOK
	case errors.As(err, &ee):
		return exitFailure
	default:
		return fail("running journalctl: %v", err)
	}
}

// sinceArg turns a Go duration into the moment that long before now, as
// journalctl's @UNIX-SECONDS; anything else is journalctl's own time
// syntax, which journalctl checks.
func sinceArg(s string, now time.Time) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", errors.New("--since: empty")
	}
	if d, err := time.ParseDuration(s); err == nil {
		return "@" + strconv.FormatInt(now.Add(-d.Abs()).Unix(), 10), nil
	}
	return s, nil
}
