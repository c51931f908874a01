package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"

	"github.com/keter-systemd/keter/bundle"
)

func cmdLogs(ctx context.Context, args []string) int {
	fs := newFlags("logs", "[-c CONFIG] [-f] [-n N] [-o FORMAT] APP",
		"Shows what APP printed, every version and stanza together: journald keeps\nit with KETER_APP=APP on each line (journalctl KETER_APP=APP underneath).\nReading the journal needs root or the systemd-journal group.")
	// Accepted as every command accepts it; the journal is the host's.
	configFlag(fs)
	follow := fs.Bool("f", false, "follow: keep printing new lines")
	lines := fs.Int("n", 0, "show only the last N lines (0: all, or 10 with -f)")
	output := fs.String("o", "short-iso", "journalctl output format (cat, short-iso, json, ...)")
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
